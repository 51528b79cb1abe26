"""Input readers: JSONL (plain, .gz, .zst, .bz2, .xz), Parquet, WebDataset tar and image folders.

``expand_inputs`` turns URIs, globs and directories (any fsspec URL) into a sorted list of
:class:`InputFile`; ``read_file`` streams one file into records and dead letters;
``ReadRecords`` does that in Beam, one file per unit of work.
"""

from winnow.pipeline.readers.inputs import FORMATS, InputFile, expand_inputs, format_of
from winnow.pipeline.readers.read import read_file
from winnow.pipeline.readers.transform import ReadOutputs, ReadRecords

__all__ = ["FORMATS", "InputFile", "expand_inputs", "format_of", "read_file", "ReadRecords", "ReadOutputs"]
