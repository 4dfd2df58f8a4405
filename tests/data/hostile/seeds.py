#!/usr/bin/python3
"""seeds.py - the hostile-input corpus as libFuzzer seeds.

  tests/data/hostile/seeds.py OUTDIR [--max-len N]

Writes one file per case of tests/data/hostile/cases.txt into OUTDIR, named
after the case, holding the raw bytes the case sends to the proxy (the
{{wait-upstream}} marks removed). Seeds longer than --max-len (default 65536,
the -max_len of tests/fuzz_smoke.sh) are cut to that length: a fuzzer would
read no further. Prints the number of files written.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
import corpus  # noqa: E402


def write_seeds(outdir, max_len=65536, path=corpus.DEFAULT_PATH):
    os.makedirs(outdir, exist_ok=True)
    n = 0
    for case in corpus.load(path):
        data = case.send
        if max_len and len(data) > max_len:
            data = data[:max_len]
        with open(os.path.join(outdir, case.name), "wb") as f:
            f.write(data)
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--max-len", type=int, default=65536)
    ap.add_argument("--cases", default=corpus.DEFAULT_PATH)
    a = ap.parse_args()
    print(write_seeds(a.outdir, a.max_len, a.cases))


if __name__ == "__main__":
    main()
