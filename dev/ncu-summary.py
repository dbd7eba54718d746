#!/usr/bin/env python3
"""dev/ncu-summary.py — per-kernel table of an Nsight Compute CSV (the gpu-check `ncu` step).

    ncu --csv --page raw --metrics gpu__time_duration.sum,dram__bytes.sum,\
        dram__throughput.avg.pct_of_peak_sustained_elapsed,\
        sm__throughput.avg.pct_of_peak_sustained_elapsed ... > kernels.csv
    dev/ncu-summary.py kernels.csv [--top 30]

Groups the launches by kernel name (template arguments cut at 90 characters) and prints, most
time first: launches, total ms, share of the profiled time, mean µs, achieved DRAM GB/s (bytes
over time), and the mean DRAM and SM throughput as % of peak. A kernel far below both peaks is
latency- or occupancy-bound; near the DRAM peak it can only get faster by moving fewer bytes.
"""
import argparse
import csv
import sys
from collections import defaultdict

TIME = "gpu__time_duration.sum"
BYTES = "dram__bytes.sum"
DRAM = "dram__throughput.avg.pct_of_peak_sustained_elapsed"
SM = "sm__throughput.avg.pct_of_peak_sustained_elapsed"


def to_ns(value, unit):
    scale = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6,
             "s": 1e9, "second": 1e9}
    return float(value.replace(",", "")) * scale.get(unit.strip(), 1.0)


def to_bytes(value, unit):
    scale = {"byte": 1.0, "B": 1.0, "Kbyte": 1e3, "KB": 1e3, "Mbyte": 1e6, "MB": 1e6,
             "Gbyte": 1e9, "GB": 1e9, "Tbyte": 1e12}
    return float(value.replace(",", "")) * scale.get(unit.strip(), 1.0)


def read_rows(path):
    """The CSV's data rows as dicts, and the units row (ncu puts units on the first row)."""
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu prefixes its own ==PROF== lines
    reader = csv.DictReader(lines)
    rows = list(reader)
    if not rows:
        return [], {}
    units = rows[0] if not rows[0].get("ID", "x").strip().isdigit() else {}
    return (rows[1:] if units else rows), units


def summarize(path, top):
    rows, units = read_rows(path)
    if not rows:
        print(f"ncu-summary: no kernel rows in {path}")
        return 1
    missing = [m for m in (TIME,) if m not in rows[0]]
    if missing:
        print(f"ncu-summary: {path} lacks the metric(s) {', '.join(missing)}")
        return 1
    agg = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0])  # n, ns, bytes, dram% sum, sm% sum
    for r in rows:
        name = r.get("Kernel Name") or r.get("Demangled Name") or r.get("Function Name") or "?"
        name = name if len(name) <= 90 else name[:87] + "..."
        a = agg[name]
        a[0] += 1
        a[1] += to_ns(r[TIME], units.get(TIME, "ns"))
        if BYTES in r and r[BYTES].strip():
            a[2] += to_bytes(r[BYTES], units.get(BYTES, "byte"))
        if DRAM in r and r[DRAM].strip():
            a[3] += float(r[DRAM].replace(",", ""))
        if SM in r and r[SM].strip():
            a[4] += float(r[SM].replace(",", ""))
    total = sum(a[1] for a in agg.values())
    print(f"{len(rows)} launches, {len(agg)} kernels, {total / 1e6:.2f} ms profiled (kernel time, clocks not locked)")
    print(f"{'launches':>8} {'total ms':>9} {'share':>6} {'mean us':>8} {'DRAM GB/s':>9} {'DRAM %':>6} {'SM %':>5}  kernel")
    for name, (n, ns, nbytes, dram, sm) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        gbs = nbytes / ns if ns > 0 else 0.0  # bytes per ns = GB/s
        print(f"{n:>8} {ns / 1e6:>9.3f} {100 * ns / total:>5.1f}% {ns / n / 1e3:>8.1f} {gbs:>9.0f} "
              f"{dram / n:>6.1f} {sm / n:>5.1f}  {name}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    return summarize(args.csv, args.top)


if __name__ == "__main__":
    sys.exit(main())
