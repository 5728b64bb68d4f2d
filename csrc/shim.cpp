// shim.cpp - the helpers declared in shim.h.
#include "shim.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <limits>

namespace torchfits {

namespace {

// Length of the valid UTF-8 sequence at s (n bytes left), 0 if none.
size_t utf8_length(const unsigned char* s, size_t n) {
  if (s[0] < 0x80) return 1;
  size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
  if (len == 0 || len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
  }
  return len;
}

// The message with bytes that are not UTF-8 (a file name in Latin-1) as
// \xNN: torch hands it to Python as UTF-8.
std::string utf8_message(const char* message) {
  std::string out;
  const auto* s = reinterpret_cast<const unsigned char*>(message);
  size_t n = std::strlen(message);
  for (size_t i = 0; i < n;) {
    size_t len = utf8_length(s + i, n - i);
    if (len) {
      out.append(message + i, len);
      i += len;
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[s[i] >> 4];
      out += hex[s[i] & 15];
      i++;
    }
  }
  return out;
}

}  // namespace

void throw_status(int status, const char* raw_message) {
  const char* name = tf_strerror(status);
  std::string message = utf8_message(raw_message);
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

namespace {

// s with every byte that is not printable ASCII as \xNN, for messages.
std::string printable(const std::string& s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (c >= 32 && c < 127 && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string os_path(const std::string& path) {
  static const std::string kBytes("\0bytes:", 7);
  if (path.find('\0') == std::string::npos) return path;
  if (path.compare(0, kBytes.size(), kBytes) == 0 && (path.size() - kBytes.size()) % 2 == 0) {
    std::string bytes;
    for (size_t i = kBytes.size(); i < path.size(); i += 2) {
      int hi = hex_digit(path[i]), lo = hex_digit(path[i + 1]);
      if (hi < 0 || lo < 0) break;
      bytes += static_cast<char>(hi << 4 | lo);
    }
    if (bytes.size() * 2 == path.size() - kBytes.size() && !bytes.empty() &&
        bytes.find('\0') == std::string::npos) {
      return bytes;
    }
  }
  TORCH_CHECK_VALUE(false, "a path cannot contain a NUL byte: '", printable(path), "'");
}

const char* c_name(const std::string& name, const char* what) {
  TORCH_CHECK_VALUE(name.find('\0') == std::string::npos, "a", what, " cannot contain a NUL byte: '",
                    printable(name), "'");
  return name.c_str();
}

FileHandle try_open(const std::string& path, int* status, FileHandle* failed) {
  static const int reentrant = tf_check_reentrant();
  TORCH_CHECK(reentrant == TF_OK,
              "torchfits: the cfitsio library linked is not the thread-safe "
              "(reentrant) build; rebuild cfitsio with --enable-reentrant");
  FileHandle f(tf_create());
  TORCH_CHECK(f, path, ": out of memory");
  *status = tf_open(f.get(), os_path(path).c_str());
  if (*status == TF_OK) return f;
  *failed = std::move(f);
  return nullptr;
}

FileHandle open_file(const std::string& path) {
  int status = TF_OK;
  FileHandle failed;
  FileHandle f = try_open(path, &status, &failed);
  check(status, failed.get());
  return f;
}

FileHandle open_confirmed(const std::string& path) {
  for (int attempt = 0;; attempt++) {
    int status = TF_OK;
    FileHandle failed;
    FileHandle f = try_open(path, &status, &failed);
    if (f) status = tf_remote_confirm(f.get());
    else f = std::move(failed);
    if (status != TF_OK && attempt == 0 && tf_remote_stale(f.get())) continue;
    check(status, f.get());
    return f;
  }
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
  check(tf_find_hdu(f, c_name(extname, "n EXTNAME"), static_cast<int>(extver), &index), f);
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

namespace {

// Bytes of a tensor of this shape and element size; SIZE_MAX past size_t.
size_t tensor_bytes(at::IntArrayRef shape, size_t elem) {
  size_t bytes = elem;
  for (int64_t n : shape) {
    TORCH_CHECK(n >= 0, "torchfits: negative extent ", n);
    if (n != 0 && bytes > SIZE_MAX / static_cast<size_t>(n)) return SIZE_MAX;
    bytes *= static_cast<size_t>(n);
  }
  return bytes;
}

}  // namespace

void allocation_failed(tf_file* f, int hdu, size_t bytes, const std::string& what,
                       const c10::Error& err) {
  // torch's first line ("DefaultCPUAllocator: can't allocate memory: ...")
  std::string cause = err.what_without_backtrace();
  cause = cause.substr(0, cause.find('\n'));
  // The message only after tf_fail_alloc has replaced it: the arguments of
  // one call are evaluated in any order, and the old message is freed.
  int status = tf_fail_alloc(f, hdu, bytes, what.c_str(), cause.c_str());
  throw_status(status, tf_errmsg(f));
}

at::Tensor empty_output(tf_file* f, int hdu, const std::string& what, at::IntArrayRef shape,
                        at::TensorOptions options) {
  size_t bytes = tensor_bytes(shape, c10::elementSize(c10::typeMetaToScalarType(options.dtype())));
  try {
    return at::empty(shape, options);
  } catch (const c10::Error& err) {
    allocation_failed(f, hdu, bytes, what, err);
  }
}

at::Tensor new_output(tf_file* f, int hdu, const char* what, at::IntArrayRef shape,
                      at::ScalarType dtype) {
  constexpr size_t kMallocFrom = 64 * 1024;  // below, torch's allocator is as good
  auto options = at::TensorOptions().dtype(dtype);
  size_t bytes = tensor_bytes(shape, c10::elementSize(dtype));
  if (bytes < kMallocFrom || bytes == SIZE_MAX) return empty_output(f, hdu, what, shape, options);
  size_t len = 0;
  void* data = tf_block_alloc(bytes, &len);
  if (data == nullptr) return empty_output(f, hdu, what, shape, options);  // torch's cause
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
