"""Build of the compiled operator library styleswap_ext._C (the package metadata is in pyproject.toml).

The CPU kernels are always built. The CUDA kernels (csrc/cuda/*.cu) are built when torch is a
CUDA build, a CUDA toolkit is found (CUDA_HOME / nvcc) and either a GPU is visible or
FORCE_CUDA=1 is set (the torchvision convention; it lets a machine without a GPU compile them).
TORCH_CUDA_ARCH_LIST picks the GPU architectures (e.g. "9.0" for H100/H200).
"""

import glob
import os
import sys

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension, is_ninja_available

ROOT = os.path.dirname(os.path.abspath(__file__))


def _build_cuda() -> bool:
    force = os.environ.get("FORCE_CUDA", "0") == "1"
    if not (force or torch.cuda.is_available()):
        return False
    if torch.version.cuda is None or CUDA_HOME is None:
        if force:
            raise RuntimeError(
                "FORCE_CUDA=1 but torch is a CPU-only build or no CUDA toolkit was found "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={CUDA_HOME}); "
                "install a CUDA build of torch and set CUDA_HOME"
            )
        return False
    return bool(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))


def _nvcc_arch_flags():
    """TORCH_CUDA_ARCH_LIST as -gencode flags, with 9.0 built as sm_90a: the arch-specific Hopper
    target runs on the same GPUs (compute capability 9.0) and adds the wgmma instructions that
    csrc/cuda/match_wgmma.cu uses. Empty (torch chooses, no wgmma) when the list has no 9.0 or names
    an architecture by name."""
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "").replace(";", " ").split()
    if not any(a.startswith("9.0") for a in archs):
        return []
    flags = []
    for a in archs:
        ptx = a.endswith("+PTX")
        num = a.replace("+PTX", "").replace(".", "")
        if not num.rstrip("a").isdigit():
            return []
        sass = "90a" if num == "90" else num
        flags.append(f"-gencode=arch=compute_{sass},code=sm_{sass}")
        if ptx:  # portable PTX for later GPUs: never the arch-specific (a) variant
            flags.append(f"-gencode=arch=compute_{num.rstrip('a')},code=compute_{num.rstrip('a')}")
    return flags


def _extension():
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    # -fopenmp: at::parallel_for is an inline `#pragma omp parallel` (ATen's OpenMP backend), so without it
    # every parallel_for in our kernels ran on one thread; the runtime is torch's own libgomp (same soname).
    cxx = ["-O3", "-fopenmp"]
    link = ["-fopenmp"]
    if not _build_cuda():
        return CppExtension("styleswap_ext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)
    # csrc/cuda: the kernels (.cu, nvcc) and the ops' entry points and checks (ops_cuda.cpp, host compiler)
    sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cpp")) + glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    include_dirs = []
    # pip's CUDA 13 torch wheels keep cublas_v2.h / cusparse.h (pulled in by ATen/cuda headers) here.
    nvidia_inc = os.path.join(os.path.dirname(torch.__file__), os.pardir, "nvidia", "cu13", "include")
    if os.path.isdir(nvidia_inc):
        include_dirs.append(os.path.abspath(nvidia_inc))
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"] + _nvcc_arch_flags()
    if os.environ.get("STYLESWAP_PTXAS_VERBOSE", "0") == "1":
        nvcc.append("-Xptxas=-v")  # register / shared-memory / spill report per kernel (benchmarks/gpu_check.sh)
    return CUDAExtension(
        "styleswap_ext._C",
        sources,
        include_dirs=include_dirs,
        define_macros=[("STYLESWAP_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=link,
    )


def _find_ninja() -> bool:
    """torch compiles in parallel (MAX_JOBS jobs) only with a `ninja` on PATH. pip's ninja package puts one
    in the venv's bin/, which is not on PATH when that venv is not activated (`.venv/bin/pip install .`,
    the Makefile): add it. False if there is none (torch then compiles one file at a time)."""
    if is_ninja_available():
        return True
    try:
        import ninja
    except ImportError:
        return False
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    return is_ninja_available()


HAVE_NINJA = _find_ninja()  # before BuildExtension looks for it


class _BuildExtension(BuildExtension.with_options(use_ninja=True)):
    """torch's build, with one line on what it compiles and how (`pip install -v` shows it)."""

    def run(self):
        for ext in self.extensions:
            cu = sum(src.endswith(".cu") for src in ext.sources)
            what = f"{len(ext.sources) - cu} C++" + (f" and {cu} CUDA" if cu else "") + " files"
            if HAVE_NINJA:
                jobs = os.environ.get("MAX_JOBS", "unset: one per core")
                print(f"setup.py: compiling {what} with ninja (MAX_JOBS={jobs})", file=sys.stderr, flush=True)
            else:
                print(f"setup.py: ninja not found: compiling {what} one at a time, on one core (pip install "
                      "ninja, then build again, to use MAX_JOBS cores)", file=sys.stderr, flush=True)
        super().run()


# Everything else (name, version, dependencies, the `styleswap` script, package data) is in
# pyproject.toml.
setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": _BuildExtension},
)
