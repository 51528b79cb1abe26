# Custom SDK container for running winnow on Dataflow (and on Spark/Flink/Kubernetes worker pools).
# The base image's Beam and Python versions must match pyproject.toml (tests/test_packaging.py checks).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/winnow/winnow:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/winnow/winnow:0.1.0
#
# Dataflow starts workers from it with --sdk_container_image=... --sdk_location=container.
# As a portable-runner worker pool: docker run --net=host IMAGE --worker_pool
FROM apache/beam_python3.11_sdk:2.77.0

# The augment stage's default back-translation backends (Apertium pairs) and WordNet; espeak-ng
# and sox for the demo corpus's speech.
RUN apt-get update \
 && apt-get install -y --no-install-recommends apertium apertium-eng-spa apertium-eng-cat apertium-eo-en wordnet-base espeak-ng sox \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/winnow
COPY pyproject.toml README.md constraints.txt ./
COPY winnow/ winnow/
COPY pipeline/ pipeline/
COPY filters/ filters/
COPY tokenizer/ tokenizer/
COPY cache/ cache/
COPY demo/ demo/
COPY monitoring/ monitoring/

# The pipeline extra (Beam and the stage libraries) without torch; the audio stages; s3 and gcs filesystems.
RUN pip install --no-cache-dir -c constraints.txt ".[pipeline,audio,s3,gcs,dataflow]" \
 && python -c "import winnow.pipeline.build, winnow.pipeline.readers"

# Keep the Beam SDK harness entrypoint from the base image.
ENTRYPOINT ["/opt/apache/beam/boot"]
