// shim.cpp - the helpers declared in shim.h.
#include "shim.h"

#include <cstdint>
#include <cstdlib>

#include <limits>

namespace torchfits {

void throw_status(int status, const char* message) {
  const char* name = tf_strerror(status);
  switch (status) {
    case TF_ENOHDU:
    case TF_ERANGE:
      TORCH_CHECK_INDEX(false, message, " [", name, "]");
    case TF_EINVAL:
    case TF_EBUFSIZE:
      TORCH_CHECK_VALUE(false, message, " [", name, "]");
    case TF_EHDUTYPE:
      TORCH_CHECK_TYPE(false, message, " [", name, "]");
    case TF_EUNSUPPORTED:
      TORCH_CHECK_NOT_IMPLEMENTED(false, message, " [", name, "]");
    default:
      TORCH_CHECK(false, message, " [", name, "]");
  }
}

FileHandle open_file(const std::string& path) {
  static const int reentrant = tf_check_reentrant();
  TORCH_CHECK(reentrant == TF_OK,
              "torchfits: the cfitsio library linked is not the thread-safe "
              "(reentrant) build; rebuild cfitsio with --enable-reentrant");
  FileHandle f(tf_create());
  TORCH_CHECK(f, path, ": out of memory");
  check(tf_open(f.get(), path.c_str()), f.get());
  return f;
}

int hdu_index(int64_t hdu) {
  // Out-of-range numbers reach the core as the nearest int, whose "HDU n
  // does not exist" message then names a number the user recognises.
  if (hdu < std::numeric_limits<int>::min()) return std::numeric_limits<int>::min();
  if (hdu > std::numeric_limits<int>::max()) return std::numeric_limits<int>::max();
  return static_cast<int>(hdu);
}

int find_hdu(tf_file* f, const std::string& extname, int64_t extver) {
  TORCH_CHECK_VALUE(extver >= 0 && extver <= std::numeric_limits<int>::max(),
                    "extver must be >= 0, got ", extver);
  int index = -1;
  check(tf_find_hdu(f, extname.c_str(), static_cast<int>(extver), &index), f);
  return index;
}

at::ScalarType to_scalar_type(tf_dtype dtype, tf_dtype* request) {
  *request = dtype;
  switch (dtype) {
    case TF_UINT8: return at::kByte;
    case TF_INT8: return at::kChar;
    case TF_INT16: return at::kShort;
#if TORCHFITS_HAS_UINT16
    case TF_UINT16: return at::kUInt16;
    case TF_UINT32: return at::kUInt32;
    case TF_UINT64: return at::kUInt64;
#else
    // A torch without unsigned dtypes wider than uint8 (before 2.3) gets
    // the next exact signed type for uint16 and uint32, and for uint64 the
    // float64 that BZERO 2^63 gave before the core knew uint64 (exact up to
    // 2^53, rounded above).
    case TF_UINT16: *request = TF_INT32; return at::kInt;
    case TF_UINT32: *request = TF_INT64; return at::kLong;
    case TF_UINT64: *request = TF_FLOAT64; return at::kDouble;
#endif
    case TF_INT32: return at::kInt;
    case TF_INT64: return at::kLong;
    case TF_FLOAT32: return at::kFloat;
    case TF_FLOAT64: return at::kDouble;
    case TF_BOOL: return at::kBool;
    case TF_COMPLEX64: return at::kComplexFloat;
    case TF_COMPLEX128: return at::kComplexDouble;
    default: TORCH_CHECK(false, "torchfits: unknown dtype ", static_cast<int>(dtype));
  }
}

at::Tensor new_output(at::IntArrayRef shape, at::ScalarType dtype) {
  constexpr size_t kMallocFrom = 64 * 1024;  // below, torch's allocator is as good
  auto options = at::TensorOptions().dtype(dtype);
  size_t bytes = c10::elementSize(dtype);
  for (int64_t n : shape) {
    TORCH_CHECK(n >= 0, "torchfits: negative extent ", n);
    if (n != 0 && bytes > SIZE_MAX / static_cast<size_t>(n)) {
      bytes = SIZE_MAX;
      break;
    }
    bytes *= static_cast<size_t>(n);
  }
  if (bytes < kMallocFrom || bytes == SIZE_MAX) return at::empty(shape, options);
  size_t len = 0;
  void* data = tf_block_alloc(bytes, &len);
  if (data == nullptr) return at::empty(shape, options);  // let torch report it
  return at::from_blob(data, shape, [len](void* p) { tf_block_free(p, len); }, options);
}

void set_region(tf_image_request* req, at::IntArrayRef start, at::IntArrayRef shape,
                at::OptionalIntArrayRef step) {
  TORCH_CHECK_VALUE(start.size() == shape.size(), "start has ", start.size(),
                    " entries but shape has ", shape.size());
  TORCH_CHECK_VALUE(!step.has_value() || step->size() == start.size(), "step has ",
                    step.has_value() ? step->size() : 0, " entries but start has ", start.size());
  TORCH_CHECK_VALUE(start.size() >= 1 && start.size() <= TF_MAX_DIMS,
                    "a cutout needs 1 to ", TF_MAX_DIMS, " axes, got ", start.size());
  req->ndim = static_cast<int>(start.size());
  for (size_t d = 0; d < start.size(); d++) {
    req->start[d] = start[d];
    req->count[d] = shape[d];
    req->step[d] = step.has_value() ? (*step)[d] : 1;
    TORCH_CHECK_VALUE(req->step[d] >= 1, "step must be >= 1, got ", req->step[d], " on axis ", d);
  }
}

}  // namespace torchfits
