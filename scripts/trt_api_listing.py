#!/usr/bin/env python3
"""The TensorRT Python API of one release, as data, read from its bindings wheel WITHOUT loading it.

Why: TensorRT cannot run on the development machines, so ``tests/tensorrt_double.py`` stands in for it. This
script gives the double something real to be checked against. The ``tensorrt-bindings`` /
``tensorrt-cu12-bindings`` / ``tensorrt-cu13-bindings`` wheels on PyPI hold the pybind11 module
(``tensorrt_bindings/tensorrt.so``) even though libnvinfer is not there, so the module cannot be imported; but
everything it registers is in the file:

* pybind11 registers ``py::class_<T>(m, "Name", doc)``, ``.def("name", ..., doc)``, ``.def_property(...)``,
  ``py::enum_<E>(m, "Name").value("MEMBER", ...)`` by passing string literals; the disassembly (``objdump -d``)
  shows each literal loaded (``lea`` of a ``.rodata`` address) in registration order, class name first;
* a docstring is either a literal or a ``tensorrt::<Class>Doc::<member>`` pointer in ``.data.rel.ro`` (resolved
  through its R_X86_64_RELATIVE relocation); it is loaded just before the name it documents;
* class docstrings list properties as ``:ivar name:``; deprecations read "[DEPRECATED] Deprecated in TensorRT X";
* a ``.def`` the compiler outlined into ``pybind11::class_<nvinfer1::T>::def...`` carries its class in the
  function's symbol name.

What a static read cannot always tell apart: a method name from a keyword-argument name in the same class
block (``:arg x:`` names in the block's docstrings are dropped unless documented as members). So ``members`` is
what a script can reach on the class, give or take a keyword name; a name absent from it is absent from the
release.

Usage (needs binutils' objdump; the output is committed under tests/data/tensorrt_api/)::

    pip download --no-deps -d /tmp/trt tensorrt-cu12-bindings==10.3.0
    python scripts/trt_api_listing.py /tmp/trt/tensorrt_cu12_bindings-10.3.0-*.whl \
        -o tests/data/tensorrt_api/trt-10.3.json

    python scripts/trt_api_listing.py --derive-8.2 tests/data/tensorrt_api/trt-8.6.json \
        -o tests/data/tensorrt_api/trt-8.2.json
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTAINER = re.compile(r"^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$")  # CamelCase, no underscore: a class or enum
# a member is deprecated when a line of its own doc (or its :ivar text, after the type) STARTS so; a doc that
# only mentions another, deprecated API ("use the IAlgorithmSelector interface ([DEPRECATED] ...)") does not count
DEPRECATED = re.compile(r"^\s*(?::class:`[^`]*`\s*)?(?:\[DEPRECATED|Deprecated\b)", re.MULTILINE)
SIGNATURE = re.compile(r"^\(.*\) -> ")
CPP_CLASS = re.compile(r"pybind11::(?:class_|enum_)<(?:nvinfer1|nvonnxparser)::(?:v_1_0::)?(\w+)")
PYTHON_NAME = {"IBuilder": "Builder", "IRuntime": "Runtime", "IRefitter": "Refitter", "IParser": "OnnxParser",
               "IParserRefitter": "OnnxParserRefitter"}
CLASS_DOC = re.compile(r":ivar (\w+):(.*)")
ARG_DOC = re.compile(r":arg (\w+):")


# -- ELF: sections and relocations (ELF64 little-endian, the x86_64 wheels) ------------------------------------

def elf_sections(data: bytes) -> dict[str, tuple[int, int, int]]:
    """{name: (address, file offset, size)}."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit("not an ELF64 little-endian file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = headers[shstrndx][4]
    sections = {}
    for name, _type, _flags, addr, offset, size, *_ in headers:
        end = data.index(b"\0", names_offset + name)
        sections[data[names_offset + name:end].decode()] = (addr, offset, size)
    return sections


def relative_relocations(data: bytes, sections: dict) -> dict[int, int]:
    """{address of a pointer: the address it points to} from .rela.dyn R_X86_64_RELATIVE entries."""
    _, offset, size = sections[".rela.dyn"]
    pointers = {}
    for i in range(size // 24):
        r_offset, r_info, r_addend = struct.unpack_from("<QQq", data, offset + i * 24)
        if r_info & 0xFFFFFFFF == 8:  # R_X86_64_RELATIVE
            pointers[r_offset] = r_addend
    return pointers


class StringTable:
    """C strings at .rodata addresses, directly or through a relocated pointer (a ``...Doc::name`` variable)."""

    def __init__(self, data: bytes):
        self.data = data
        self.sections = elf_sections(data)
        self.pointers = relative_relocations(data, self.sections)
        self.rodata = self.sections[".rodata"]

    def at(self, address: int) -> str | None:
        address = self.pointers.get(address, address)
        start, offset, size = self.rodata
        if not start <= address < start + size:
            return None
        begin = offset + address - start
        end = self.data.find(b"\0", begin)
        try:
            text = self.data[begin:end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        return text or None


# -- the registration stream ---------------------------------------------------------------------------------

LEA = re.compile(r"\blea\s+-?0x[0-9a-f]+\(%rip\),%\w+\s+# ([0-9a-f]+)")
CALL = re.compile(r"\b(?:call|jmp)\s+[0-9a-f]+ <(pybind11::(?:class_|enum_)<.*)>$")
REGISTER = re.compile(r"pybind11::(class_|enum_)<(?:\w+::)*(\w+)[^<>]*(?:<[^<>]*>[^<>]*)*>::"
                      r"(class_|enum_|def\w*|value)\b")
LABEL = re.compile(r"^[0-9a-f]+ <(.*)>:$")


def string_stream(so_path: str, strings: StringTable):
    """(function symbol, string, None) for every string literal or docstring pointer the code loads, and
    (function symbol, None, callee) for every call of a pybind11 ``class_``/``enum_`` method, in code order."""
    process = subprocess.Popen(["objdump", "-d", "-C", "--no-show-raw-insn", so_path], stdout=subprocess.PIPE,
                               text=True, errors="replace")
    function = ""
    for line in process.stdout:
        label = LABEL.match(line)
        if label:
            function = label.group(1)
            continue
        found = LEA.search(line)
        if found:
            text = strings.at(int(found.group(1), 16))
            if text is not None:
                yield function, text, None
            continue
        called = CALL.search(line)
        if called:
            yield function, None, called.group(1)
    if process.wait() != 0:
        raise SystemExit("objdump failed on {}".format(so_path))


def is_prose(text: str) -> bool:
    return not IDENT.match(text) and not SIGNATURE.match(text) and len(text) > 12 and " " in text


class Container:
    def __init__(self, name: str):
        self.name = name
        self.names: list[str] = []
        self.docs: dict[str, str] = {}
        self.ivars: dict[str, str] = {}
        self.args: set[str] = set()

    def add(self, name: str, doc: str | None):
        if name not in self.names:
            self.names.append(name)
        if doc is not None and name not in self.docs:
            self.docs[name] = doc
            self.args.update(ARG_DOC.findall(doc))

    def add_class_doc(self, doc: str):
        for name, text in CLASS_DOC.findall(doc):
            self.ivars.setdefault(name, text.strip())

    def listing(self) -> dict:
        members = set(self.ivars) | set(self.docs)
        members |= {n for n in self.names if n not in self.args}
        deprecated = {}
        for name in sorted(members):
            note = self.ivars.get(name) or self.docs.get(name) or ""
            if DEPRECATED.search(note):
                deprecated[name] = deprecation_note(note)
        return {"members": sorted(members), "deprecated": deprecated}


def deprecation_note(text: str) -> str:
    """The sentence that says since when and what instead (first 200 characters)."""
    found = re.search(r"Deprecated in TensorRT [^\n]*|\[DEPRECATED[^\n]*", text)
    return (found.group(0) if found else text).strip()[:200]


def registration_call(callee: str):
    """(C++ class, pybind11 method) for a call of ``pybind11::class_<T, ...>::def...`` / ``enum_<T>::value`` /
    their constructors, else None."""
    matches = list(REGISTER.finditer(callee))
    if not matches:
        return None
    return matches[-1].group(2), matches[-1].group(3)


def read_registrations(stream) -> dict[str, Container]:
    """Walk the stream: a class/enum constructor (called, or its CamelCase name loaded) opens a container; every
    name loaded after it belongs there, and a ``def``/``value`` call files the name loaded just before it."""
    containers: dict[str, Container] = {}
    python_names: dict[str, str] = dict(PYTHON_NAME)  # C++ class -> Python name, learnt from constructor calls
    current: Container | None = None
    previous: str | None = None  # the last prose string (a docstring candidate)
    last_name: str | None = None  # the last identifier loaded (the name a def/value call registers)
    last_doc: str | None = None  # its docstring
    last_filed: tuple | None = None  # (container, name) where the plain stream filed it, if it was new there

    def container(name: str) -> Container:
        return containers.setdefault(name, Container(name))

    for function, text, callee in stream:
        outlined = registration_call(function)
        if callee is not None:
            called = registration_call(callee)
            if called is None:
                continue
            cpp, method = called
            if method in ("class_", "enum_"):
                if last_name and not outlined:
                    python_names[cpp] = last_name
                    current = container(last_name)
                    current.names = [n for n in current.names if n != last_name]
            elif not outlined:
                current = container(python_names.get(cpp, cpp))
                if last_name:
                    if last_filed and last_filed[0] is not current:  # the plain stream guessed wrong: move it
                        wrong = last_filed[0]
                        wrong.names = [n for n in wrong.names if n != last_name]
                        wrong.docs.pop(last_name, None)
                    current.add(last_name, last_doc)
            last_name = last_filed = None
            continue
        if SIGNATURE.match(text):
            continue  # pybind11's signature template, between a docstring and its name
        target = current
        if outlined:
            cpp = outlined[0]
            target = container(python_names.get(cpp, cpp))
        if is_prose(text):
            if target is not None and ":ivar " in text and previous is None:
                target.add_class_doc(text)
            previous = text
            continue
        if not IDENT.match(text) or "pybind11" in text:
            previous = None
            continue
        if CONTAINER.match(text) and not outlined:
            current = container(text)
            previous = None
            last_name = text
            continue
        last_name, last_doc, last_filed = text, previous, None
        if target is not None:
            if text not in target.names:
                last_filed = (target, text)
            target.add(text, previous)
        previous = None
    return containers


def module_functions(init_source: str) -> list[str]:
    """Functions the wheel's Python ``__init__`` defines at module level (``nptype``, ``volume``...)."""
    tree = ast.parse(init_source)
    return sorted(node.name for node in tree.body if isinstance(node, ast.FunctionDef)
                  and not node.name.startswith("_"))


def init_class_names(init_source: str) -> list[str]:
    """CamelCase names the wheel's ``__init__`` uses as ``Name.attr`` (classes it patches, such as ``Logger``, whose
    registration a static read may miss: their C++ type is a function-local class)."""
    tree = ast.parse(init_source)
    return sorted({node.value.id for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and isinstance(node.value, ast.Name) and CONTAINER.match(node.value.id)})


def listing_from_wheel(wheel: str) -> dict:
    version_match = re.match(r"tensorrt(?:_cu\d+)?_bindings-([0-9][^-]*)-", os.path.basename(wheel))
    if not version_match:
        raise SystemExit("{}: not a tensorrt*-bindings wheel name".format(wheel))
    with open(wheel, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    work = tempfile.mkdtemp(prefix="trt-api-")
    try:
        with zipfile.ZipFile(wheel) as archive:
            so_name = next(n for n in archive.namelist() if n.endswith("/tensorrt.so"))
            init_name = os.path.dirname(so_name) + "/__init__.py"
            so_path = archive.extract(so_name, work)
            init_source = archive.read(init_name).decode("utf-8")
        with open(so_path, "rb") as handle:
            strings = StringTable(handle.read())
        containers = read_registrations(string_stream(so_path, strings))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "tensorrt": version_match.group(1),
        "source": {"wheel": os.path.basename(wheel), "sha256": digest,
                   "method": "static read of tensorrt_bindings/tensorrt.so (scripts/trt_api_listing.py)"},
        "module_functions": module_functions(init_source),
        "init_classes": init_class_names(init_source),
        "classes": {name: c.listing() for name, c in sorted(containers.items()) if c.names or c.ivars},
    }


# -- TensorRT 8.2: no bindings wheel; 8.6 minus what NVIDIA's API change tables say came later ----------------

ADDED_AFTER_8_2 = {
    # TensorRT 8.4.0 EA API changes, "New Python APIs":
    # https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-840-ea/api/index.html
    "8.4": {"IBuilderConfig": ["set_memory_pool_limit", "get_memory_pool_limit"], "MemoryPoolType": None,
            "Builder": ["max_threads"], "Runtime": ["max_threads"], "Refitter": ["max_threads"]},
    # TensorRT 8.5.1 API changes (name-based I/O), "New Python APIs":
    # https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-851/pdf/TensorRT-API.pdf
    "8.5": {"ICudaEngine": ["num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape",
                            "get_tensor_dtype", "get_tensor_location", "get_tensor_profile_shape",
                            "get_tensor_format", "get_tensor_format_desc", "get_tensor_vectorized_dim",
                            "get_tensor_bytes_per_component", "get_tensor_components_per_element",
                            "is_shape_inference_io", "get_tensor_profile_values"],
            "IExecutionContext": ["set_tensor_address", "get_tensor_address", "execute_async_v3", "set_input_shape",
                                  "get_tensor_shape", "get_tensor_strides", "set_input_consumed_event",
                                  "get_input_consumed_event", "set_output_allocator", "get_output_allocator",
                                  "get_max_output_size", "infer_shapes"],
            "TensorIOMode": None, "IOutputAllocator": None, "DataType": ["UINT8"]},
    # TensorRT 8.6.0 EA API changes, "New Python APIs":
    # https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-860-ea/pdf/TensorRT-API.pdf
    "8.6": {"IBuilderConfig": ["builder_optimization_level", "hardware_compatibility_level", "max_aux_streams",
                               "plugins_to_serialize", "progress_monitor"],
            "ICudaEngine": ["hardware_compatibility_level", "num_aux_streams"],
            "IExecutionContext": ["set_aux_streams"], "HardwareCompatibilityLevel": None, "DataType": ["FP8"],
            "BuilderFlag": ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"], "Runtime": ["load_runtime",
                                                                                        "engine_host_code_allowed"],
            "IProgressMonitor": None},
}


DEPRECATED_AFTER_8_2 = {
    # TensorRT 8.4.0 EA API changes, "Deprecated Python APIs" (get/set_max_workspace_size):
    # https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-843/api/index.html
    "8.4": {"IBuilderConfig": ["max_workspace_size"]},
}


def derive_8_2(listing_86: dict) -> dict:
    """8.2 = 8.6 minus ADDED_AFTER_8_2, and only the deprecations dated 8.0 / 7.x (8.4+ ones came later).

    An over-approximation: a name added in 8.4-8.6 that the change tables above do not list stays in; a
    deprecation the 8.6 docstrings do not date stays too (the double must then flag it on 8.2 as well)."""
    classes = json.loads(json.dumps(listing_86["classes"]))
    removed = []
    for release, changes in ADDED_AFTER_8_2.items():
        for cls, names in changes.items():
            if names is None:
                if classes.pop(cls, None) is not None:
                    removed.append("{} ({})".format(cls, release))
                continue
            entry = classes.get(cls)
            for name in names:
                if entry and name in entry["members"]:
                    entry["members"].remove(name)
                    entry["deprecated"].pop(name, None)
                    removed.append("{}.{} ({})".format(cls, name, release))
    for release, changes in DEPRECATED_AFTER_8_2.items():
        for cls, names in changes.items():
            for name in names:
                if classes.get(cls, {}).get("deprecated", {}).pop(name, None) is not None:
                    removed.append("deprecation of {}.{} ({})".format(cls, name, release))
    for entry in classes.values():
        for name, note in list(entry["deprecated"].items()):
            since = re.search(r"TensorRT (\d+)\.(\d+)", note)
            if since and (int(since.group(1)), int(since.group(2))) > (8, 2):
                del entry["deprecated"][name]
    return {"tensorrt": "8.2", "source": {
        "derived_from": "trt-{}.json".format(listing_86["tensorrt"]),
        "method": "the 8.6 listing minus the Python APIs that NVIDIA's API change tables for 8.4.0 EA, 8.5.1 and "
                  "8.6.0 EA list as new (scripts/trt_api_listing.py ADDED_AFTER_8_2, each with its page), and "
                  "without deprecations dated after 8.2; 8.2 has no bindings wheel on PyPI",
        "removed": removed}, "module_functions": listing_86["module_functions"],
        "init_classes": listing_86["init_classes"], "classes": classes}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a tensorrt*-bindings wheel, or with --derive-8.2 the 8.6 listing")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--derive-8.2", dest="derive", action="store_true")
    args = parser.parse_args(argv)
    if args.derive:
        with open(args.source) as handle:
            listing = derive_8_2(json.load(handle))
    else:
        listing = listing_from_wheel(args.source)
    listing["command"] = "python scripts/trt_api_listing.py {}{} -o {}".format(
        "--derive-8.2 " if args.derive else "", os.path.basename(args.source), args.output)
    with open(args.output, "w") as handle:
        json.dump(listing, handle, indent=1, sort_keys=True)
        handle.write("\n")
    print("{}: TensorRT {}, {} classes/enums".format(args.output, listing["tensorrt"], len(listing["classes"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
