"""The binary interface of the build: libbittorch exports its own API and nothing else, and no
binary carries a private copy of the C++ runtime.

A library or program linked with a static libstdc++ holds its own exception machinery; an
exception thrown through one copy and caught through another (a c10::Error from LibTorch
caught in BitTorch, or one from BitTorch caught by Python) crashes the process. That is what
made the Python test die on the GPU machine, whose GCC has only a static libstdc++.

Usage: check_exports.py LIBRARY [PROGRAM...]"""
import re
import subprocess
import sys

# Demangled names the library may export (cmake/exports.map).
EXPORTED = re.compile(r"^(bittorch::|(typeinfo|typeinfo name|vtable|VTT) for bittorch::|bittorch_version$)")
# Defined only by a C++ runtime itself: a binary that defines them carries one.
RUNTIME = ("__cxa_throw", "__cxa_begin_catch", "__cxa_allocate_exception", "__gxx_personality_v0",
           "__cxa_get_globals")


def symbols(*args):
    result = subprocess.run(["nm", *args], capture_output=True, text=True, check=True)
    return [line.split(" ", 2)[2] for line in result.stdout.splitlines() if line.count(" ") >= 2]


def main():
    library, programs = sys.argv[1], sys.argv[2:]
    failures = []
    exported = symbols("-DC", "--defined-only", library)
    foreign = sorted({name for name in exported if not EXPORTED.match(name)})
    if foreign:
        failures.append(f"{library} exports {len(foreign)} symbols outside namespace bittorch, e.g.:\n  "
                        + "\n  ".join(foreign[:20]))
    if not any(name.startswith("bittorch::") for name in exported):
        failures.append(f"{library} exports nothing of namespace bittorch")
    print(f"{library}: {len(exported)} exported symbols, all of namespace bittorch" if not foreign else "")
    needed = subprocess.run(["readelf", "-d", library], capture_output=True, text=True, check=True).stdout
    if "libstdc++.so" not in needed:
        failures.append(f"{library} does not load the shared C++ runtime (no NEEDED libstdc++.so.6)")
    for binary in [library, *programs]:
        defined = set(symbols("--defined-only", binary))
        runtime = sorted(name for name in RUNTIME if name in defined)
        if runtime:
            failures.append(f"{binary} carries its own C++ runtime (defines {', '.join(runtime)}): it was "
                            "linked with a static libstdc++ (see cmake/SharedCxxRuntime.cmake)")
        else:
            print(f"{binary}: uses the shared C++ runtime")
    for failure in failures:
        print("FAILED: " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
