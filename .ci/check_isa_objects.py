"""Check the ODR safety of the per-SIMD-level kernel objects (see cpp/src/cpu/isa_begin.hpp).

Every function an AVX2 or AVX-512 object file *exports* outside its own namespace
(thermossl::isa_avx2, thermossl::isa_avx512: template instantiations and inline functions from
the standard or public headers, weak symbols the linker may pick for baseline callers) must
contain no AVX instruction (VEX or EVEX, the v-prefixed mnemonics), or a machine without that
level could execute it. An object's level is read from its CMake directory
(thermossl_isa_<level>.dir); objects outside one are checked against isa_avx2.
Usage: python .ci/check_isa_objects.py OBJECT...
"""
import re
import subprocess
import sys

VEX = re.compile(r"\t(v[a-z0-9]+)\s")  # AVX instructions are the v-prefixed mnemonics


def functions(obj):
    text = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", obj], capture_output=True, text=True,
                          check=True).stdout
    name, body = None, []
    for line in text.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            if name is not None:
                yield name, body
            name, body = header.group(1), []
        elif name is not None:
            body.append(line)
    if name is not None:
        yield name, body


def exported(obj):
    out = subprocess.run(["nm", "-C", "--defined-only", obj], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "TWVtw" and parts[1].isupper():
            names.add(parts[2])
    return names


def level_namespace(obj):
    found = re.search(r"thermossl_(isa_[a-z0-9]+)\.dir", obj)
    return (found.group(1) if found else "isa_avx2") + "::"


bad = []
checked = 0
namespaces = set()
for obj in sys.argv[1:]:
    exports = exported(obj)
    own = level_namespace(obj)
    namespaces.add(own.rstrip(":"))
    for name, body in functions(obj):
        if name not in exports or own in name:
            continue
        checked += 1
        avx = sorted({m.group(1) for line in body for m in [VEX.search(line)] if m})
        if avx:
            bad.append(f"{obj}: {name}: {', '.join(avx[:5])}")
levels = ", ".join(sorted(namespaces))
print(f"checked {checked} exported functions outside {levels} in {len(sys.argv) - 1} objects")
if bad:
    print("AVX instructions in functions shared with baseline code:\n  " + "\n  ".join(bad))
    sys.exit(1)
print(f"ok: no AVX instructions outside the namespaces of the levels ({levels})")
