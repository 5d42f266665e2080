#include "tensor_map.h"

#include <c10/util/Exception.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <mutex>

namespace styleswap {
namespace match_detail {
namespace {

// cuTensorMapEncodeTiled is a driver-API function: fetched through the runtime, so that the
// extension does not link libcuda itself. The driver's own typedef of the version asked for below.
using EncodeTiled = PFN_cuTensorMapEncodeTiled_v12000;

EncodeTiled encode_tiled() {
  static EncodeTiled fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    const cudaError_t err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t err = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &p, cudaEnableDefault, &found);
#endif
    if (err == cudaSuccess && found == cudaDriverEntryPointSuccess) fn = reinterpret_cast<EncodeTiled>(p);
    else (void)cudaGetLastError();  // do not leave the failed query as the last CUDA error
  });
  return fn;
}

}  // namespace

bool make_kmajor_tensor_map(const at::Tensor& t, int box_rows, CUtensorMap* out) noexcept {
  try {
    CUtensorMapDataType type;
    switch (t.scalar_type()) {
      case at::kFloat: type = CU_TENSOR_MAP_DATA_TYPE_FLOAT32; break;  // wgmma reads it as TF32
      case at::kBFloat16: type = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16; break;
      case at::kHalf: type = CU_TENSOR_MAP_DATA_TYPE_FLOAT16; break;
      default: return false;
    }
    const int64_t elem = t.element_size();
    const auto addr = reinterpret_cast<std::uintptr_t>(t.data_ptr());
    if (t.dim() != 2 || t.stride(1) != 1 || (t.stride(0) * elem) % 16 != 0 || addr % 16 != 0 || box_rows > 256) {
      return false;
    }
    const EncodeTiled encode = encode_tiled();
    if (encode == nullptr) {
      TORCH_WARN_ONCE("styleswap: cuTensorMapEncodeTiled is not available from the CUDA driver; the TMA match "
                      "kernel falls back to the WMMA kernel");
      return false;
    }
    const cuuint64_t dims[2] = {static_cast<cuuint64_t>(t.size(1)), static_cast<cuuint64_t>(t.size(0))};
    const cuuint64_t strides[1] = {static_cast<cuuint64_t>(t.stride(0) * elem)};  // bytes, dims 1..
    const cuuint32_t box[2] = {static_cast<cuuint32_t>(128 / elem), static_cast<cuuint32_t>(box_rows)};
    const cuuint32_t element_strides[2] = {1, 1};
    const CUresult r = encode(out, type, 2, t.data_ptr(), dims, strides, box, element_strides,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
      TORCH_WARN_ONCE("styleswap: cuTensorMapEncodeTiled failed (CUresult ", static_cast<int>(r),
                      "); the TMA match kernel falls back to the WMMA kernel");
      return false;
    }
    return true;
  } catch (...) {  // a warning turned into an error, or an allocation failure: fall back, never throw
    return false;
  }
}

}  // namespace match_detail
}  // namespace styleswap
