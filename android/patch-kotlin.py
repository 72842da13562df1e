#!/usr/bin/env python3
"""Works around UniFFI 0.31's Kotlin generator bug for error variants with a field named
`message` (mozilla/uniffi-rs#1434, #2065): it emits

    class Network(
        val `message`: kotlin.String
        ) : TetherException() {
        override val message
            get() = "message=${ `message` }"
    }

which kotlinc rejects ("conflicting declarations", "'message' hides member of supertype").
For each such class this turns the constructor property into `override val` (a narrower
type than Throwable.message: String?, which Kotlin allows) and drops the generated getter.
Classes without a `message` field are left untouched, so once the Rust fields are renamed
this script changes nothing.

    patch-kotlin.py <file.kt>        (rewrites the file in place, prints what it did)
"""
import re
import sys

path = sys.argv[1]
lines = open(path, encoding="utf-8").read().split("\n")
out = []
patched = 0
i = 0
class_start = re.compile(r"^\s+class \w+\($")
msg_prop = re.compile(r"^(\s+)val `message`: ")
class_end = re.compile(r"^\s+\) : \w+Exception\(\) \{$")
while i < len(lines):
    line = lines[i]
    if not class_start.match(line):
        out.append(line)
        i += 1
        continue
    # Collect the constructor up to ") : XException() {".
    j = i + 1
    while j < len(lines) and not class_end.match(lines[j]) and j - i < 40:
        j += 1
    if j >= len(lines) or not class_end.match(lines[j]):
        out.append(line)
        i += 1
        continue
    ctor = lines[i : j + 1]
    if not any(msg_prop.match(l) for l in ctor):
        out.extend(ctor)
        i = j + 1
        continue
    out.extend(msg_prop.sub(r"\1override val `message`: ", l) for l in ctor)
    k = j + 1
    if (
        k + 1 < len(lines)
        and lines[k].strip() == "override val message"
        and lines[k + 1].strip().startswith("get() =")
    ):
        k += 2
    else:
        sys.exit(f"patch-kotlin.py: unexpected shape after line {j + 1} of {path}")
    patched += 1
    i = k
open(path, "w", encoding="utf-8").write("\n".join(out))
print(f"patch-kotlin.py: {patched} exception class(es) with a `message` field patched in {path}",
      file=sys.stderr)
