// table_ops.cpp - kernels of read_table and table_info: ask the core for
// each column's shape and dtype (and a VLA's total length), allocate, let
// the core fill every column in one call.
#include <c10/core/CPUAllocator.h>

#include <cstring>

#include "ops.h"
#include "shim.h"

namespace torchfits {
namespace {

using TableDict = c10::Dict<std::string, at::Tensor>;

std::vector<int> column_numbers(tf_file* f, int hdu,
                                const c10::optional<std::vector<std::string>>& names) {
  int64_t nrows = 0;
  int ncols = 0;
  check(tf_table_shape(f, hdu, &nrows, &ncols), f);
  std::vector<int> cols;
  if (!names.has_value() || names->empty()) {
    for (int c = 0; c < ncols; c++) cols.push_back(c);
    return cols;
  }
  for (const auto& name : *names) {
    int c = -1;
    check(tf_table_find_column(f, hdu, c_name(name, " column name"), &c), f);
    cols.push_back(c);
  }
  return cols;
}

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The columns asked for (all when names is empty), in that order; a VLA
// column NAME gives NAME.offsets then NAME. fixed_only refuses VLAs. The
// core sizes every output first (tf_table_output: the total is bounded by
// the file's size), then they are allocated and filled in one call.
NamedTensors read_tensors(tf_file* f, int hdu, const c10::optional<std::vector<std::string>>& names,
                          int64_t start_row, int64_t num_rows, tf_read_path path,
                          bool fixed_only) {
  std::vector<int> cols = column_numbers(f, hdu, names);
  int64_t nrows = num_rows;
  check(tf_table_rows(f, hdu, start_row, &nrows), f);
  std::vector<tf_table_out> outs(cols.size());
  std::vector<tf_column_info> infos(cols.size());
  std::vector<at::ScalarType> scalars(cols.size());
  for (size_t i = 0; i < cols.size(); i++) {
    tf_column_info& ci = infos[i];
    check(tf_table_column(f, hdu, cols[i], &ci), f);
    TORCH_CHECK_VALUE(!fixed_only || ci.kind != TF_COL_VLA, "column ", ci.name,
                      " has variable-length rows; read_columns gives fixed-width columns only "
                      "(read_table gives values and offsets)");
    tf_dtype request = ci.dtype;
    scalars[i] = to_scalar_type(ci.dtype, &request);
    outs[i].col = cols[i];
    outs[i].dtype = request;
  }
  check(tf_table_output(f, hdu, start_row, nrows, outs.data(), static_cast<int>(outs.size())), f);
  NamedTensors tensors;
  for (size_t i = 0; i < cols.size(); i++) {
    const tf_column_info& ci = infos[i];
    tf_table_out& o = outs[i];
    auto options = at::TensorOptions().dtype(scalars[i]);
    std::string what = std::string("column '") + ci.name + "'";
    at::Tensor values;
    if (ci.kind == TF_COL_VLA) {
      int64_t nelem = static_cast<int64_t>(o.data_bytes / c10::elementSize(scalars[i]));
      values = empty_output(f, hdu, what, {nelem}, options);
      at::Tensor offsets = empty_output(f, hdu, what + " (offsets)", {nrows + 1},
                                        at::TensorOptions().dtype(at::kLong));
      o.offsets = offsets.data_ptr<int64_t>();
      o.offsets_bytes = offsets.nbytes();
      tensors.emplace_back(std::string(ci.name) + ".offsets", offsets);
    } else {
      std::vector<int64_t> shape{nrows};
      shape.insert(shape.end(), ci.shape, ci.shape + ci.ndim);
      values = empty_output(f, hdu, what, shape, options);
    }
    o.data = values.data_ptr();
    o.data_bytes = values.nbytes();
    tensors.emplace_back(ci.name, values);
  }
  check(tf_table_read(f, hdu, start_row, nrows, outs.data(), static_cast<int>(outs.size()), path),
        f);
  return tensors;
}

TableDict read_dict(tf_file* f, int hdu, const c10::optional<std::vector<std::string>>& names,
                    int64_t start_row, int64_t num_rows, tf_read_path path) {
  TableDict out;
  for (auto& kv : read_tensors(f, hdu, names, start_row, num_rows, path, false)) {
    out.insert(kv.first, kv.second);  // first column of a name wins
  }
  return out;
}

TableInfo table_info_of(tf_file* f, int hdu) {
  int64_t nrows = 0;
  int ncols = 0;
  check(tf_table_shape(f, hdu, &nrows, &ncols), f);
  std::vector<std::string> names, tforms, tunits, tdims, dtypes;
  std::vector<int64_t> repeats, tnulls;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<double> tscals, tzeros;
  c10::List<bool> has_tnull;
  for (int c = 0; c < ncols; c++) {
    tf_column_info ci;
    check(tf_table_column(f, hdu, c, &ci), f);
    names.emplace_back(ci.name);
    tforms.emplace_back(ci.tform);
    tunits.emplace_back(ci.tunit);
    tdims.emplace_back(ci.tdim);
    repeats.push_back(ci.repeat);
    shapes.emplace_back(ci.shape, ci.shape + ci.ndim);
    tf_dtype request;
    to_scalar_type(ci.dtype, &request);  // the dtype a read returns here
    dtypes.emplace_back(tf_dtype_name(request));
    tscals.push_back(ci.scale);
    tzeros.push_back(ci.zero);
    tnulls.push_back(ci.null);
    has_tnull.push_back(ci.has_null != 0);
  }
  return {nrows, names, tforms, tunits, tdims, repeats, shapes, dtypes, tscals, tzeros, tnulls,
          has_tnull};
}

}  // namespace

TableDict read_table(const std::string& path, int64_t hdu, const c10::optional<std::vector<std::string>>& columns,
                     int64_t start_row, int64_t num_rows) {
  return with_file(path, [&](tf_file* h) {
    return read_dict(h, hdu_index(hdu), columns, start_row, num_rows, TF_PATH_AUTO);
  });
}

TableDict read_table_name(const std::string& path, const std::string& hdu,
                          const c10::optional<std::vector<std::string>>& columns, int64_t start_row,
                          int64_t num_rows, int64_t extver) {
  return with_file(path, [&](tf_file* h) {
    return read_dict(h, find_hdu(h, hdu, extver), columns, start_row, num_rows,
                        TF_PATH_AUTO);
  });
}

TableDict read_table_cfitsio(const std::string& path, int64_t hdu,
                             const c10::optional<std::vector<std::string>>& columns, int64_t start_row,
                             int64_t num_rows) {
  return with_file(path, [&](tf_file* h) {
    return read_dict(h, hdu_index(hdu), columns, start_row, num_rows, TF_PATH_CFITSIO);
  });
}

std::vector<at::Tensor> read_columns(const std::string& path, int64_t hdu,
                                     const std::vector<std::string>& columns, int64_t start_row,
                                     int64_t num_rows) {
  TORCH_CHECK_VALUE(!columns.empty(), path, ": read_columns needs at least one column name");
  return with_file(path, [&](tf_file* h) {
    std::vector<at::Tensor> out;
    for (auto& kv : read_tensors(h, hdu_index(hdu), columns, start_row, num_rows,
                                 TF_PATH_AUTO, true)) {
      out.push_back(kv.second);
    }
    return out;
  });
}

// One tensor per row, each a copy with a storage of its own (as fitsio and
// astropy give one array per row), built as TensorImpls here rather than
// through the dispatcher: on 100,000 rows it costs a fraction of
// torch.tensor_split's views, which record their base for autograd.
std::vector<at::Tensor> split_rows(const at::Tensor& values, const at::Tensor& offsets) {
  TORCH_CHECK_VALUE(values.dim() == 1, "split_rows: values must have one axis, not ",
                    values.dim());
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.scalar_type() == at::kLong &&
                        offsets.numel() >= 1,
                    "split_rows: offsets must be int64 [rows + 1], not ", offsets.scalar_type(),
                    " ", offsets.sizes());
  at::Tensor off = offsets.contiguous();
  const int64_t* o = off.data_ptr<int64_t>();
  const int64_t rows = off.numel() - 1, total = values.numel();
  TORCH_CHECK_VALUE(o[0] >= 0 && o[rows] <= total, "split_rows: offsets run from ", o[0], " to ",
                    o[rows], ", outside the ", total, " values");
  for (int64_t r = 0; r < rows; r++)
    TORCH_CHECK_VALUE(o[r] <= o[r + 1], "split_rows: offsets decrease at row ", r, " (", o[r],
                      " then ", o[r + 1], ")");
  at::Tensor src = values.contiguous();
  const char* base = static_cast<const char*>(src.data_ptr());
  const size_t esize = src.element_size();
  c10::Allocator* alloc = c10::GetCPUAllocator();
  const c10::DispatchKeySet keys(c10::DispatchKey::CPU);
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; r++) {
    const int64_t n = o[r + 1] - o[r];
    const size_t bytes = static_cast<size_t>(n) * esize;
    c10::DataPtr data = alloc->allocate(bytes);
    if (bytes) std::memcpy(data.get(), base + static_cast<size_t>(o[r]) * esize, bytes);
    c10::Storage storage(c10::Storage::use_byte_size_t(), bytes, std::move(data), alloc, false);
    auto impl = c10::make_intrusive<c10::TensorImpl>(std::move(storage), keys, src.dtype());
    impl->set_sizes_contiguous({n});
    out.emplace_back(std::move(impl));
  }
  return out;
}

TableInfo table_info(const std::string& path, int64_t hdu) {
  return with_file(path, [&](tf_file* h) {
    return table_info_of(h, hdu_index(hdu));
  });
}

TableInfo table_info_name(const std::string& path, const std::string& hdu, int64_t extver) {
  return with_file(path, [&](tf_file* h) {
    return table_info_of(h, find_hdu(h, hdu, extver));
  });
}

}  // namespace torchfits
