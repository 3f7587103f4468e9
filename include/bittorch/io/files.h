#pragma once

// How BitTorch reads and writes files (packed models, checkpoints, metrics): every file is
// written through write_file_atomically and read through read_regular_file.

#include <bittorch/export.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace bittorch::io {

/// Replaces the file at `path` with `bytes`, so that no reader, crash or kill ever sees a
/// partial file and an earlier file stays intact until the new one is complete: the bytes go
/// to a temporary file in the target's directory (unnamed where the filesystem allows, so a
/// killed process leaves nothing behind; else named after the writing process, and a file left
/// by a killed writer is removed by the next write to `path`), are flushed and fsync'ed, the
/// file is renamed over `path`, and the directory is fsync'ed. Concurrent writers each
/// replace the file whole; the last rename wins. On any failure (a full disk, say) the
/// temporary file is removed and a c10::Error names `path` and the cause. A symbolic link at
/// `path` is followed: its target is replaced.
BITTORCH_API void write_file_atomically(const std::string& path, std::string_view bytes);

/// Checks, before any work is done, that write_file_atomically(path, ...) can succeed as far
/// as can be known: `path` is not empty, not a directory or another non-regular file (a FIFO,
/// a device), and its directory exists and is writable. A c10::Error names `what` (a flag
/// such as "--save", or a function) and the reason.
BITTORCH_API void check_writable_path(const std::string& path, std::string_view what);

/// Whether `a` and `b` name the same file: one that exists, through any symbolic or hard
/// link (the same device and inode); one that does not exist yet, the same place (its
/// directory resolved, and a symbolic link followed to where it points, which
/// write_file_atomically writes through once that target exists).
BITTORCH_API bool same_file(const std::string& a, const std::string& b);

/// The bytes of the regular file at `path`. A missing or unreadable file, a directory, a FIFO
/// or a device (/dev/zero, say) is refused up front with a c10::Error that names `path`; the
/// file is read in one allocation of its size.
BITTORCH_API std::string read_regular_file(const std::string& path);

/// The size in bytes of the regular file at `path` (the checks of read_regular_file).
BITTORCH_API int64_t regular_file_size(const std::string& path);

/// The CRC-32 (zlib's) of `bytes`, as packed model files and checkpoints record it.
BITTORCH_API uint32_t crc32(std::string_view bytes);

}  // namespace bittorch::io
