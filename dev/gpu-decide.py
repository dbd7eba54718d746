#!/usr/bin/env python3
"""dev/gpu-decide.py STEPS — the timings and the decision rule of docs/performance.md over
one dev/gpu-check.sh call's step logs (NAME.log, each ending in "--> exit N"): a folder, or
the call's $OUT/steps.tgz as fetched.

First every step's timing in run order: truthgpt bench's row under its 'ms/step' header, or
PyTorch's JSON line, with the SM clock it ran at and gpu-ceiling.py's floor where logged.

A switch may become the default only if the test, kernels and curve steps passed and its
bench row (ab-NAME) is faster than both default rows of the same call (bench, ab-default);
profiled rows (ab-*-prof) are held against the profiled default (bench-prof). Prints a verdict
per row and the ratio to PyTorch (torch); decides nothing itself. Works on a partial call (a
step that did not run is "not run")."""
import os
import re
import sys
import tarfile
import tempfile


def step_log(d, name):
    p = os.path.join(d, name + ".log")
    return open(p, errors="replace").read() if os.path.exists(p) else None


def exit_code(d, name):
    text = step_log(d, name)
    if text is None:
        return None
    m = re.findall(r"^--> exit (\d+)$", text, re.M)
    return int(m[-1]) if m else None  # no line: the call ended during this step


def bench_row(d, name):
    """truthgpt bench prints a header starting 'ms/step' and the row under it."""
    text = step_log(d, name)
    if text is None:
        return None
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("ms/step"):
            return lines[i + 1]
    return None


def ms_per_step(d, name):
    row = bench_row(d, name)
    try:
        return float(row.split()[0]) if row else None
    except ValueError:
        return None


def torch_line(d, name):
    m = re.findall(r'"ms_per_step_median": [0-9.]+, "tokens_per_s": [0-9]+', step_log(d, name) or "")
    return m[-1] if m else None


def notes(d, name):
    """The lines worth keeping beside a timing: the SM clock a step ran at (gpu-check's clk_stop)
    and gpu-ceiling.py's floor."""
    return [l.strip() for l in (step_log(d, name) or "").splitlines()
            if re.match(r"^\S+ clocks: ", l) or l.startswith("floor ")]


def main(argv):
    if len(argv) != 2 or not (os.path.isdir(argv[1]) or (os.path.isfile(argv[1]) and tarfile.is_tarfile(argv[1]))):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    if os.path.isdir(argv[1]):
        return report(argv[1])
    with tempfile.TemporaryDirectory() as d, tarfile.open(argv[1]) as tf:
        # the "data" filter (no links out, no absolute paths) where this Python has it (3.11.4+)
        tf.extractall(d, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        return report(d)


def report(d):
    print("timings (truthgpt bench: the row under its header; PyTorch: its JSON line), in run order:")
    # run order = modification time; whole seconds (what tar keeps), then the name, so a folder
    # and its archive list the same order
    logs = sorted((f for f in os.listdir(d) if f.endswith(".log")),
                  key=lambda f: (int(os.path.getmtime(os.path.join(d, f))), f))
    for f in logs:
        line = bench_row(d, f[:-4]) or torch_line(d, f[:-4])
        if line:
            print("  %-16s %s" % (f[:-4], line))
        for extra in notes(d, f[:-4]):
            print("  %-16s %s" % ("", extra))
    gates = {k: exit_code(d, k) for k in ("test", "kernels", "curve")}
    gates_ok = all(v == 0 for v in gates.values())
    def word(v):
        return {0: "passed", None: "not run or cut off", 77: "skipped (no GPU)"}.get(v, "FAILED (exit %s)" % v)

    print("decision rule: " + ", ".join("%s %s" % (k, word(v)) for k, v in gates.items()))
    plain = [x for x in (ms_per_step(d, "bench"), ms_per_step(d, "ab-default")) if x is not None]
    prof = ms_per_step(d, "bench-prof")
    for f in sorted(os.listdir(d)):
        name = f[:-4]
        if not f.endswith(".log") or not name.startswith("ab-") or name == "ab-default":
            continue
        t = ms_per_step(d, name)
        if t is None:
            print("  %-18s no ms/step (exit %s)" % (name, exit_code(d, name)))
            continue
        if name.endswith("-prof"):
            ref = [prof] if prof is not None else []
        else:
            ref = plain
        if not ref:
            print("  %-18s %8.2f ms   no default row to hold it against" % (name, t))
            continue
        verdict = "not faster"
        if t < min(ref):
            verdict = "faster than every default row: candidate" + ("" if gates_ok else " (but a gate did not pass)")
        print("  %-18s %8.2f ms   default %-15s %s" % (name, t, "/".join("%.2f" % x for x in ref), verdict))
    torch = torch_line(d, "torch")
    if torch and plain:
        tm, best = float(re.search(r"[0-9.]+", torch).group()), min(plain)
        print("  PyTorch %.2f ms/step: default truthgpt %.2f ms = %.3fx (goal 1.20x: %.2f ms)" % (tm, best, tm / best, tm / 1.2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
