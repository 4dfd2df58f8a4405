#!/usr/bin/python3
"""run.py - the integration test runner.

  /usr/bin/python3 tests/integration/run.py [test_x | test_x.py | test_x.test_name ...]

Without arguments runs every tests/integration/test_*.py. For each module:
setup_module() if present (raising unittest.SkipTest there skips the whole
module with one `skip <module>: why` line), every top-level test_* function in file order,
teardown_module() if present, then any child process still registered with
the harness is killed. Prints one line per test:
  ok <module>.<test>
  FAIL <module>.<test>: <reason>
followed (for failures) by the traceback, each line indented by two spaces,
and at the end `integration: N passed, N failed`. Exit status 1 if anything
failed. A test running longer than $TEST_TIMEOUT seconds (default 300) is
interrupted (SIGALRM; a module's SETUP_TIMEOUT, if larger, bounds its
setup_module), marked failed and its child processes are killed; a
backstop watchdog ends the whole run if even that does not get control back.
Tests' own stdout goes to stderr so the result lines stay clean.
"""

import importlib
import inspect
import os
import signal
import sys
import threading
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DEBIAN_PYTHON = "/usr/bin/python3"
SKIP = object()  # report() marker for unittest.SkipTest

try:
    import cryptography  # noqa: F401 - the simulator and tests need it
except ImportError:
    if os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON) and os.path.exists(DEBIAN_PYTHON):
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON] + sys.argv)
    raise
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)

import harness  # noqa: E402

OUT = sys.stdout
TIMEOUT = float(os.environ.get("TEST_TIMEOUT", "300"))


class TestTimeout(BaseException):
    """Raised in the main thread by SIGALRM (BaseException: tests' `except Exception` won't eat it)."""


def _alarm(signum, frame):
    # Kill the children first (from a thread: the main thread may hold the
    # harness lock) so that helper threads blocked on them wake up too.
    threading.Thread(target=harness.kill_children, daemon=True).start()
    raise TestTimeout("timed out (TEST_TIMEOUT, or the module's SETUP_TIMEOUT)")


class Watchdog(threading.Thread):
    """Backstop: if a test overruns its timeout by a grace period (SIGALRM did
    not get the main thread back), report, kill children and end the run."""

    def __init__(self, results):
        threading.Thread.__init__(self, daemon=True)
        self.results = results
        self.current = None
        self.started = 0.0
        self.lock = threading.Lock()

    def begin(self, name, limit=TIMEOUT):
        with self.lock:
            self.current, self.started, self.limit = name, time.time(), limit

    def end(self):
        with self.lock:
            self.current = None

    def run(self):
        while True:
            time.sleep(1)
            with self.lock:
                name, started, limit = self.current, self.started, getattr(self, "limit", TIMEOUT)
            if name and time.time() - started > limit + 30:
                emit("FAIL %s: hung past the timeout; run aborted" % name)
                harness.kill_children()
                self.results["failed"] += 1
                summary(self.results)
                os._exit(1)


_emit_lock = threading.Lock()


def emit(line):
    with _emit_lock:
        OUT.write(line + "\n")
        OUT.flush()


def summary(results):
    skipped = results.get("skipped", 0)
    emit("integration: %d passed, %d failed" % (results["passed"], results["failed"]) +
         (", %d skipped" % skipped if skipped else ""))


def call(fn, dog, name, limit=None):
    """Run fn with the timeout -> None on success, else (reason, traceback text)."""
    limit = limit or TIMEOUT
    dog.begin(name, limit)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        fn()
        return None
    except TestTimeout as e:
        harness.kill_children()
        return str(e), traceback.format_exc()
    except unittest.SkipTest as e:  # counted apart: a skipped test never counts as passed
        return SKIP, str(e)
    except BaseException as e:  # noqa: B902 - a test may raise anything, even SystemExit
        if isinstance(e, KeyboardInterrupt):
            raise
        msg = str(e).strip().splitlines()
        reason = type(e).__name__ + (": " + msg[0] if msg else "")
        return reason, traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        dog.end()


def report(name, failure, results):
    if failure is not None and failure[0] is SKIP:
        results["skipped"] = results.get("skipped", 0) + 1
        emit("skip %s: %s" % (name, failure[1]))
        return
    if failure is None:
        results["passed"] += 1
        emit("ok " + name)
        return
    results["failed"] += 1
    reason, tb = failure
    lines = ["FAIL %s: %s" % (name, reason)]
    lines += ["  " + ln for ln in tb.rstrip("\n").splitlines()]
    emit("\n".join(lines))


def discover(args):
    """[(module name, [test names] or None for all)] in a stable order."""
    if not args:
        names = sorted(f[:-3] for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
        return [(n, None) for n in names]
    plan = []
    for a in args:
        a = os.path.basename(a)
        if a.endswith(".py"):
            a = a[:-3]
        mod, _, test = a.partition(".")
        for m, tests in plan:
            if m == mod and tests is not None and test:
                tests.append(test)
                break
        else:
            plan.append((mod, [test] if test else None))
    return plan


def tests_of(module):
    fns = [(name, fn) for name, fn in vars(module).items()
           if name.startswith("test_") and inspect.isfunction(fn) and fn.__module__ == module.__name__]
    fns.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
    return fns


def run_module(modname, only, dog, results):
    try:
        module = importlib.import_module(modname)
    except BaseException as e:  # noqa: B902
        report("%s.<import>" % modname, (type(e).__name__ + ": " + str(e).splitlines()[0] if str(e) else
                                          type(e).__name__, traceback.format_exc()), results)
        return
    tests = tests_of(module)
    if only is not None:
        known = {n for n, _ in tests}
        for n in only:
            if n not in known:
                report("%s.%s" % (modname, n), ("no such test", ""), results)
        tests = [(n, f) for n, f in tests if n in only]
    setup_failure = None
    if hasattr(module, "setup_module"):
        # SETUP_TIMEOUT: a module whose setup may legitimately take longer (test_image's first build)
        setup_failure = call(module.setup_module, dog, modname + ".setup_module",
                             max(TIMEOUT, getattr(module, "SETUP_TIMEOUT", 0)))
    if setup_failure and setup_failure[0] is SKIP:  # the whole module: one line, not one per test
        report(modname, setup_failure, results)
        tests = []
    for name, fn in tests:
        full = "%s.%s" % (modname, name)
        if setup_failure:
            report(full, ("setup_module failed: " + setup_failure[0], setup_failure[1]), results)
        else:
            report(full, call(fn, dog, full), results)
    if hasattr(module, "teardown_module"):
        f = call(module.teardown_module, dog, modname + ".teardown_module")
        if f is not None:
            report(modname + ".teardown_module", f, results)
    harness.kill_children()


# Modules that take longest start first when running in parallel.
SLOW_FIRST = ("test_image", "test_tokens", "test_faults", "test_bodies", "test_reload", "test_credentials", "test_limits")


def run_parallel(plan, jobs):
    """Each module in its own runner process (modules share nothing: own
    simulators, ports and work directories), at most `jobs` at a time; their
    result lines are printed whole, module by module, as each finishes."""
    import subprocess
    order = sorted(plan, key=lambda p: (p[0] not in SLOW_FIRST, SLOW_FIRST.index(p[0]) if p[0] in SLOW_FIRST else 0))
    results = {"passed": 0, "failed": 0, "skipped": 0}
    env = dict(os.environ, TEST_JOBS="1")
    running, pending = [], list(order)
    while pending or running:
        while pending and len(running) < jobs:
            mod, only = pending.pop(0)
            args = [mod] if only is None else ["%s.%s" % (mod, t) for t in only]
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + args, stdout=subprocess.PIPE,
                                    env=env, cwd=harness.REPO)
            running.append((mod, proc))
        time.sleep(0.1)
        for item in list(running):
            mod, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            out = proc.stdout.read().decode("utf-8", "replace")
            proc.stdout.close()
            for line in out.splitlines():
                if line.startswith("integration: "):
                    continue
                emit(line)
                if line.startswith("ok "):
                    results["passed"] += 1
                elif line.startswith("FAIL "):
                    results["failed"] += 1
                elif line.startswith("skip "):
                    results["skipped"] += 1
            if proc.returncode != 0 and "\nFAIL " not in "\n" + out:
                emit("FAIL %s.<runner>: exited with status %d" % (mod, proc.returncode))
                results["failed"] += 1
    return results


def main():
    os.chdir(harness.REPO)
    jobs = int(os.environ.get("TEST_JOBS", "1") or 1)
    plan = discover(sys.argv[1:])
    if jobs > 1 and len(plan) > 1:
        results = run_parallel(plan, jobs)
        summary(results)
        sys.stdout.flush()
        os._exit(1 if results["failed"] else 0)
    sys.stdout = sys.stderr  # tests' prints must not mix with result lines
    signal.signal(signal.SIGALRM, _alarm)
    results = {"passed": 0, "failed": 0}
    dog = Watchdog(results)
    dog.start()
    try:
        for modname, only in plan:
            run_module(modname, only, dog, results)
    except KeyboardInterrupt:
        emit("FAIL run: interrupted")
        results["failed"] += 1
    finally:
        harness.kill_children()
    summary(results)
    OUT.flush()
    sys.stderr.flush()
    os._exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
