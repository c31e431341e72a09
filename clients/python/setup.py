"""setup.py — builds the vecshard package with its gRPC stubs.

The stubs of the public API (vecshard/v1/{common,vecshard}_pb2*.py) are not
in the source tree: build_py runs protoc on the repository's proto/ (../../proto, or
$VECSHARD_PROTO) with the grpc_python_plugin ($GRPC_PYTHON_PLUGIN, default
/usr/bin/grpc_python_plugin, Debian's protobuf-compiler-grpc) into the
build directory, next to the package's own modules. Metadata is in
pyproject.toml.
"""
import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithStubs(build_py):
    """build_py that also generates the protobuf and gRPC modules."""

    def run(self):
        super().run()
        proto = os.environ.get("VECSHARD_PROTO", os.path.join(HERE, "..", "..", "proto"))
        plugin = os.environ.get("GRPC_PYTHON_PLUGIN", "/usr/bin/grpc_python_plugin")
        files = [os.path.join(proto, "vecshard", "v1", f)
                 for f in ("common.proto", "vecshard.proto")]
        if not all(os.path.exists(f) for f in files):
            raise SystemExit("setup.py: %s has no vecshard/v1/*.proto (set VECSHARD_PROTO)" %
                             proto)
        out = self.build_lib
        subprocess.check_call(["protoc", "-I" + proto, "--python_out=" + out,
                               "--grpc_python_out=" + out,
                               "--plugin=protoc-gen-grpc_python=" + plugin] + files)
        for d in ("vecshard/v1",):
            init = os.path.join(out, d, "__init__.py")
            if not os.path.exists(init):
                open(init, "w").close()


setup(cmdclass={"build_py": BuildWithStubs})
