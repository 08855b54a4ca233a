#!/usr/bin/env python3
"""CTest "catch_test_count": every Catch2 test case runs under exactly one CTest test.

CMake once split test names at ';', so four test cases became nine CTest tests whose
filters matched nothing, and Catch2 2.13 exits 0 on "No test cases matched": CTest
counted them as passed. This check fails on any such drift:
  1. the CTest tests that run kitnn_tests with a test-name filter are exactly the
     visible Catch test cases, one each, under the same name;
  2. each such filter, given back to kitnn_tests, selects exactly that one test case;
  3. every hidden test case ([.]) carries a tag that a tag-filtered CTest test runs,
     or the tag [tool] (generators run by hand, e.g. "[make_own_digits]": not tests);
  4. every kitnn_tests command carries "-w NoTests", so a filter that matches nothing
     fails instead of passing.
Usage: check_test_count.py KITNN_TESTS BUILD_DIR
"""
import json
import subprocess
import sys


def names(exe, *spec):
    out = subprocess.run([exe, *spec, "--list-test-names-only"], capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def main():
    exe, build = sys.argv[1], sys.argv[2]
    visible = names(exe)
    hidden = names(exe, "[.]")
    tools = set(names(exe, "[tool]"))
    show = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build, capture_output=True,
                          text=True, check=True)
    tests = json.loads(show.stdout)["tests"]
    by_name, tag_runs, problems = {}, [], []
    for t in tests:
        cmd = t.get("command") or []
        if t["name"] == "catch_test_count" or exe not in cmd[:2]:
            continue  # this check itself; tests that do not run kitnn_tests
        args = cmd[cmd.index(exe) + 1:]
        if "-w" not in args or args[args.index("-w") + 1] != "NoTests":
            problems.append(f"CTest test '{t['name']}' runs kitnn_tests without -w NoTests")
        if args and args[0].startswith("["):
            tag_runs.append(args[0])
        else:
            by_name[t["name"]] = args[0] if args else ""
    print(f"catch test cases: {len(visible)} visible, {len(hidden)} hidden; "
          f"CTest tests running one test case: {len(by_name)}; tag runs: {', '.join(tag_runs)}")
    if len(by_name) != len(visible):
        problems.append(f"{len(visible)} visible Catch test cases but {len(by_name)} CTest tests run one")
    for n in sorted(set(visible) - set(by_name)):
        problems.append(f"Catch test case not run by any CTest test: '{n}'")
    for n in sorted(set(by_name) - set(visible)):
        problems.append(f"CTest test with no Catch test case of that name: '{n}'")
    for n, spec in by_name.items():
        if n in visible:
            got = names(exe, spec)
            if got != [n]:
                problems.append(f"the filter of CTest test '{n}' selects {got}")
    for n in hidden:
        if n in tools:
            continue
        sel = [spec for spec in tag_runs if n in names(exe, spec)]
        if not sel:
            problems.append(f"hidden Catch test case run by no tag-filtered CTest test: '{n}'")
    for p in problems:
        print("FAIL:", p)
    if problems:
        return 1
    print(f"PASS: all {len(visible)} visible test cases run under their own CTest name; "
          f"all {len(hidden) - len(tools)} hidden ones under a tag run ({len(tools)} [tool] cases left to run by hand)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
