"""`python -m bench`: run every benchmark module that exists, one after the other."""

import importlib
import sys

MODULES = ("bench.listing_bench", "bench.backup_bench", "bench.backup_memory_bench", "bench.read_bench",
           "bench.load_bench", "bench.restore_bench",
           "bench.fanout_bench", "bench.planning_bench", "bench.small_objects_bench")

for name in MODULES:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        print(f"skip {name}: not present", file=sys.stderr)
        continue
    module.main()
