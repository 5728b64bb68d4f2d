// ops.cpp - every schema of torch.ops.torchfits, written out in one place.
//
// The kernels take only strings and numbers, no tensors, so the dispatcher
// has no tensor to compute a dispatch key from. Like torchvision's
// read_file, they are registered under BackendSelect, which the dispatcher
// always includes, so the calls reach them from Python, TorchScript and
// DataLoader workers alike.
#include <torch/library.h>

#include "ops.h"
#include "write_ops.h"

TORCH_LIBRARY(torchfits, m) {
  // Images. hdu is 0-based; the .name overloads take EXTNAME (and EXTVER,
  // 0 = any). raw=True returns stored values without BZERO/BSCALE.
  m.def("read(str path, int hdu=0, bool raw=False) -> Tensor");
  m.def("read.name(str path, str hdu, int extver=0, bool raw=False) -> Tensor");
  // A region: start and shape in C order, step >= 1 (default 1).
  m.def(
      "read_cutout(str path, int hdu, int[] start, int[] shape, int[]? step=None, "
      "bool raw=False) -> Tensor");
  m.def(
      "read_cutout.name(str path, str hdu, int extver, int[] start, int[] shape, "
      "int[]? step=None, bool raw=False) -> Tensor");
  // The same reads through cfitsio's own routines, for tests: empty start
  // and shape read the whole image.
  m.def(
      "_read_cfitsio(str path, int hdu, int[] start, int[] shape, int[]? step=None, "
      "bool raw=False) -> Tensor");

  // Headers: one entry per keyword (first wins), COMMENT/HISTORY joined by
  // newlines, CONTINUE long strings joined, string values unquoted.
  m.def("read_header(str path, int hdu=0) -> Dict(str, str)");
  m.def("read_header.name(str path, str hdu, int extver=0) -> Dict(str, str)");
  // Every card in order: keys, values, comments, and a one-letter type
  // (C string, L logical, I int, F float, X complex, U undefined,
  // H commentary).
  m.def("read_header_cards(str path, int hdu=0) -> (str[], str[], str[], str[])");

  // Metadata.
  m.def("num_hdus(str path) -> int");
  m.def("find_hdu(str path, str extname, int extver=0) -> int");
  // Per HDU: kind (image, binary_table, ascii_table), shape (tables: [rows]),
  // dtype of a default read ("" for tables), EXTNAME, EXTVER, BITPIX,
  // tile-compressed.
  m.def("info(str path) -> (str[], int[][], str[], str[], int[], int[], bool[])");

  // ---- Data loading ----
  // Reads into a tensor the caller gives (a pinned buffer, a slice of a
  // batch): CPU, contiguous, exactly the read's dtype and shape, else a
  // ValueError/TypeError. Nothing is allocated for the output. Mutating
  // ops return nothing that aliases `out`: torch.compile's functionalization
  // refuses custom ops whose outputs alias their inputs.
  m.def("read_into(str path, int hdu, Tensor(a!) out, bool raw=False) -> ()");
  // The region start + i*step, i < out.shape.
  m.def(
      "read_cutout_into(str path, int hdu, int[] start, Tensor(a!) out, int[]? step=None, "
      "bool raw=False) -> ()");
  // The same HDU (or region: start and shape) of every file, stacked along
  // a new first axis, read by `threads` threads (0: automatic), each file
  // with its own handle. Returns (batch, ok): with skip_errors a file that
  // fails leaves a zero slot and ok[i] False; without, the first failing
  // file's error is raised.
  m.def(
      "read_batch(str[] paths, int hdu=0, int[]? start=None, int[]? shape=None, "
      "int[]? step=None, bool raw=False, bool skip_errors=False, int threads=0) "
      "-> (Tensor, Tensor)");
  // Cutouts of shape [ny, nx] from the 2-d images of several files, one per
  // row of items (int64 [n, 3]: file index into paths / hdus, or -1 for
  // none; y; x: the first pixel, 0-based, C order, may lie outside the
  // image), as float [n, ny, nx] (dtype float32 or float64; None: float32),
  // `fill` outside the images. Grouped by file, on `threads` threads.
  m.def(
      "read_cutouts(str[] paths, int[] hdus, Tensor items, int[] shape, float fill, "
      "ScalarType? dtype=None, int threads=0) -> Tensor");
  // The same into `out` [N, ...]; returns ok.
  m.def(
      "read_batch_into(str[] paths, int hdu, Tensor(a!) out, int[]? start=None, "
      "int[]? step=None, bool raw=False, bool skip_errors=False, int threads=0) -> Tensor");

  // Process-wide settings, by name: threads (per large read; 0: one per
  // CPU), keep_mb (freed large outputs kept for reuse), unpack_max_mb
  // (most a compressed file unpacks to). set_option returns the previous
  // value. Read by each call as it starts; the core never reads the
  // environment (the Python package reads it once, at import).
  m.def("set_option(str name, int value) -> int");
  m.def("get_option(str name) -> int");
  // Remote reads: string settings (aws_access_key_id, aws_secret_access_key,
  // aws_session_token, aws_region, aws_endpoint_url; None or "" unsets),
  // copied from the environment by the Python package; and the requests
  // made and bytes received so far, [requests, bytes] (zeroed by reset).
  m.def("set_remote_config(str key, str? value) -> ()");
  m.def("remote_stats(bool reset=False) -> int[]");

  // A file kept open across reads: torch.classes.torchfits.File(path).
  torchfits::register_file_class(m);
}

TORCH_LIBRARY_IMPL(torchfits, BackendSelect, m) {
  m.impl("read", TORCH_FN(torchfits::read));
  m.impl("read.name", TORCH_FN(torchfits::read_name));
  m.impl("read_cutout", TORCH_FN(torchfits::read_cutout));
  m.impl("read_cutout.name", TORCH_FN(torchfits::read_cutout_name));
  m.impl("_read_cfitsio", TORCH_FN(torchfits::read_cfitsio));
  m.impl("read_header", TORCH_FN(torchfits::read_header));
  m.impl("read_header.name", TORCH_FN(torchfits::read_header_name));
  m.impl("read_header_cards", TORCH_FN(torchfits::read_header_cards));
  m.impl("num_hdus", TORCH_FN(torchfits::num_hdus));
  m.impl("find_hdu", TORCH_FN(torchfits::find_hdu_op));
  m.impl("info", TORCH_FN(torchfits::info));
  m.impl("read_batch", TORCH_FN(torchfits::read_batch));
  m.impl("set_option", TORCH_FN(torchfits::set_option));
  m.impl("get_option", TORCH_FN(torchfits::get_option));
  m.impl("set_remote_config", TORCH_FN(torchfits::set_remote_config));
  m.impl("remote_stats", TORCH_FN(torchfits::remote_stats));
}

// Data-loading ops that take a tensor dispatch on it: CPU (pinned memory is
// CPU too). A tensor on another device finds no kernel and is refused.
TORCH_LIBRARY_IMPL(torchfits, CPU, m) {
  m.impl("read_into", TORCH_FN(torchfits::read_into));
  m.impl("read_cutout_into", TORCH_FN(torchfits::read_cutout_into));
  m.impl("read_batch_into", TORCH_FN(torchfits::read_batch_into));
  m.impl("read_cutouts", TORCH_FN(torchfits::read_cutouts));
}

// ---- Tables ----
// Binary and ASCII tables as dicts of tensors, keyed by TTYPE as the file
// spells it (column names match case-insensitively). hdu is 0-based, so the
// first extension is 1; columns None or empty reads every column; num_rows
// -1 reads to the end. Strings come back as uint8 [rows, width]; a
// variable-length array column NAME as NAME (values concatenated) and
// NAME.offsets (int64 [rows + 1]: row i is values[offsets[i]:offsets[i+1]]).
TORCH_LIBRARY_FRAGMENT(torchfits, m) {
  m.def(
      "read_table(str path, int hdu=1, str[]? columns=None, int start_row=0, int num_rows=-1) "
      "-> Dict(str, Tensor)");
  m.def(
      "read_table.name(str path, str hdu, str[]? columns=None, int start_row=0, "
      "int num_rows=-1, int extver=0) -> Dict(str, Tensor)");
  // The named columns as a list, in the order given (fixed-width columns:
  // numbers, vectors, strings as uint8). Ops returning a dict cannot be
  // traced by torch.compile; this one can.
  m.def(
      "read_columns(str path, int hdu, str[] columns, int start_row=0, int num_rows=-1) "
      "-> Tensor[]");
  // A variable-length column's values and offsets (as read_table gives
  // them) as one tensor per row, each a copy of its own: row i is
  // values[offsets[i]:offsets[i+1]].
  m.def("split_rows(Tensor values, Tensor offsets) -> Tensor[]");
  // The same through cfitsio's column reads, for tests.
  m.def(
      "_read_table_cfitsio(str path, int hdu=1, str[]? columns=None, int start_row=0, "
      "int num_rows=-1) -> Dict(str, Tensor)");
  // Per column: rows, then names, TFORM, TUNIT, TDIM, repeat, per-row shape
  // (C order; [-1] for VLAs), dtype a read returns, TSCAL, TZERO, TNULL,
  // whether TNULL is set.
  m.def(
      "table_info(str path, int hdu=1) -> (int, str[], str[], str[], str[], int[], int[][], "
      "str[], float[], float[], int[], bool[])");
  m.def(
      "table_info.name(str path, str hdu, int extver=0) -> (int, str[], str[], str[], str[], "
      "int[], int[][], str[], float[], float[], int[], bool[])");
}

TORCH_LIBRARY_IMPL(torchfits, BackendSelect, m) {
  m.impl("read_table", TORCH_FN(torchfits::read_table));
  m.impl("read_table.name", TORCH_FN(torchfits::read_table_name));
  m.impl("read_columns", TORCH_FN(torchfits::read_columns));
  m.impl("_read_table_cfitsio", TORCH_FN(torchfits::read_table_cfitsio));
  m.impl("table_info", TORCH_FN(torchfits::table_info));
  m.impl("table_info.name", TORCH_FN(torchfits::table_info_name));
}

TORCH_LIBRARY_IMPL(torchfits, CPU, m) {
  m.impl("split_rows", TORCH_FN(torchfits::split_rows));
}

// ---- Sky coordinates, through wcslib ----
// world and pixel are float64 [N, naxis] in the WCS's axis order; pixel
// coordinates are 0-based (the centre of the first pixel is 0), as
// astropy's all_world2pix / all_pix2world with origin 0. alt: "" for the
// primary WCS, or a letter A-Z. Points outside the projection give NaN.
// Large N runs on several threads (the "threads" option).
TORCH_LIBRARY_FRAGMENT(torchfits, m) {
  m.def("world_to_pixel(str path, int hdu, Tensor world, str alt=\"\", bool wcslib=False) -> Tensor");
  m.def("pixel_to_world(str path, int hdu, Tensor pixel, str alt=\"\", bool wcslib=False) -> Tensor");
  // CTYPE, CUNIT, CRVAL, CRPIX (1-based, as stored), pixel scale per pixel
  // axis (CUNIT per pixel), image NAXISn (FITS order), and the world
  // coordinates of the centres of the 4 corner pixels [4, naxis] (astropy's
  // calc_footprint order; [0, naxis] when the HDU has no matching image).
  m.def(
      "wcs_info(str path, int hdu=0, str alt=\"\") -> (str[], str[], float[], float[], "
      "float[], int[], Tensor)");
}

TORCH_LIBRARY_IMPL(torchfits, CPU, m) {
  m.impl("world_to_pixel", TORCH_FN(torchfits::world_to_pixel));
  m.impl("pixel_to_world", TORCH_FN(torchfits::pixel_to_world));
}

TORCH_LIBRARY_IMPL(torchfits, BackendSelect, m) {
  m.impl("wcs_info", TORCH_FN(torchfits::wcs_info));
}

// ---- Writing ----
// The file is written to a temporary file beside the target and renamed
// into place (csrc/core/write/):
// an error at any point leaves no file under the name and an existing one
// untouched. data holds one image HDU per entry (None: an HDU without data,
// e.g. an empty primary); a compressed first image gets an empty primary
// before it. Header cards come flattened: ncards[h] cards for HDU h, each a
// key, a value as text, a comment and a one-letter type (C L I F U H, as
// read_header_cards gives them). Structural keywords are refused. The
// per-HDU compression lists are empty (no compression, defaults) or hold
// one entry per HDU: compress "" or RICE_1, GZIP_1, GZIP_2, HCOMPRESS_1,
// PLIO_1; tile shapes in C order; quantize_level;
// quantize_method (-1 NO_DITHER, 1 SUBTRACTIVE_DITHER_1, 2
// SUBTRACTIVE_DITHER_2); dither_seed (0: from the clock, 1..10000);
// hcomp_scale; the tiles flattened, tile_ndim[h] axes each (0: cfitsio's
// row tiles). checksum writes CHECKSUM and DATASUM; sync fsyncs the file
// before the rename and its directory after (off: atomic, not durable
// across a power loss). Returns the bytes
// written. Registered under BackendSelect like the reads, so that a tensor
// on any device reaches the one kernel, which copies it to the CPU; and
// with CONSERVATIVE alias analysis: the op's effect is the file, and
// TorchScript must not drop a call whose result goes unused.
TORCH_LIBRARY_FRAGMENT(torchfits, m) {
  m.def(torch::schema(
      "write(str path, Tensor?[] data, int[] ncards, str[] keys, str[] values, "
      "str[] comments, str[] types, bool overwrite=False, bool checksum=False, "
      "str[]? compress=None, int[] tile=[], int[] tile_ndim=[], float[] quantize_level=[], "
      "int[] quantize_method=[], int[] dither_seed=[], float[] hcomp_scale=[], bool sync=False) -> int",
      c10::AliasAnalysisKind::CONSERVATIVE));
  // An empty primary HDU and one binary table: columns [rows, *cell]
  // (TDIM for cells of 2 or more axes), named by names; kinds per column:
  // "" from the dtype (bool as L, uint16/uint32/uint64/int8 with TZERO),
  // or "A" for uint8 [rows, *, width] characters; units as TUNIT. The
  // header cards as for write, for the table's HDU.
  m.def(torch::schema(
      "write_table(str path, str[] names, Tensor[] columns, str[] kinds, str[] units, "
      "str[] keys, str[] values, str[] comments, str[] types, bool overwrite=False, "
      "bool checksum=False, bool sync=False) -> int",
      c10::AliasAnalysisKind::CONSERVATIVE));
  // Images and binary tables mixed, in order, to a new file, or with
  // append after the last HDU of an existing one (a new file made of its
  // bytes and the new HDUs, renamed over it; its HDUs are never changed).
  // hdu_kinds[h] is "image" or "table"; images[h] the image's data (None
  // for no data, and for tables). Header cards as for write. ncols[h]
  // columns for HDU h (0 for images), taken in order from the flattened
  // per-column lists: names, columns (fixed: [rows, *cell]; variable-length:
  // the values of every row concatenated, with offsets[c] int64 [rows + 1],
  // as read_table gives NAME and NAME.offsets; offsets may be empty, or None
  // per fixed column), col_kinds ("" from the dtype, "A" uint8 strings, "P"
  // with offsets), units, tscal, tzero, tnull, each empty or one per column;
  // col_flags per column says which of TSCAL (1), TZERO (2) and TNULL (4)
  // to write (the data are the stored values). Compression lists as for
  // write, one entry per HDU ("" and no tile for tables). Returns the
  // file's size.
  m.def(torch::schema(
      "write_hdus(str path, str[] hdu_kinds, Tensor?[] images, int[] ncards, str[] keys, "
      "str[] values, str[] comments, str[] types, int[] ncols, str[] names, "
      "Tensor[] columns, Tensor?[] offsets, str[] col_kinds, str[] units, "
      "float[] tscal, float[] tzero, int[] tnull, int[] col_flags, "
      "str[] compress, int[] tile, int[] tile_ndim, float[] quantize_level, "
      "int[] quantize_method, int[] dither_seed, float[] hcomp_scale, "
      "bool overwrite=False, bool append=False, bool checksum=False, bool sync=False) -> int",
      c10::AliasAnalysisKind::CONSERVATIVE));
  // Per HDU of any FITS file: DATASUM and CHECKSUM status, each 1 (matches),
  // 0 (keyword absent) or -1 (does not match), as fits_verify_chksum.
  m.def("verify_checksum(str path) -> (int[], int[])");
}

TORCH_LIBRARY_IMPL(torchfits, BackendSelect, m) {
  m.impl("write", TORCH_FN(torchfits::write));
  m.impl("write_table", TORCH_FN(torchfits::write_table));
  m.impl("write_hdus", TORCH_FN(torchfits::write_hdus));
  m.impl("verify_checksum", TORCH_FN(torchfits::verify_checksum));
}
