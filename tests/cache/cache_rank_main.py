"""One simulated rank, run as its own process by the tests: iterate an epoch through a
DataLoader with workers and write what it saw (ids, corrupt count, metrics) as JSON."""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if cfg.get("s3fs_retries"):
        import s3fs

        s3fs.S3FileSystem.retries = cfg["s3fs_retries"]  # leave the retrying to the loader
    from winnow.cache import INDEX_KEY, StreamingDataLoader, StreamingDataset
    from winnow.cache.remote import RetryPolicy
    from winnow.cache.synth import expected_tokens, sample_length

    ds = StreamingDataset(retry=RetryPolicy(attempts=12, base_delay=0.02, max_delay=0.5), **cfg["dataset"])
    lengths = tuple(cfg["lengths"])
    ids, corrupt = [], 0
    for n, batch in enumerate(StreamingDataLoader(ds, num_workers=cfg["workers"])):
        if cfg.get("delay"):  # a slow trainer (so that a test can kill it mid-epoch)
            time.sleep(cfg["delay"])
        if n == 2 and cfg.get("progress"):
            open(cfg["progress"], "w").close()
        toks, offs = batch["tokens"], batch.get("tokens_offsets")
        for k, i in enumerate(batch[INDEX_KEY].tolist()):
            got = toks[k].numpy() if offs is None else toks[offs[k]:offs[k + 1]].numpy()
            corrupt += not np.array_equal(got, expected_tokens(i, int(sample_length(i, lengths))))
            ids.append(i)
    with open(cfg["out"], "w") as f:
        json.dump({"ids": ids, "corrupt": corrupt, "metrics": ds.metrics()}, f)


if __name__ == "__main__":
    main()
