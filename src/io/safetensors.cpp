// io::read_safetensors, io::write_safetensors: the format from its specification (an 8-byte
// header size, a JSON header, the arrays), checked against the file's size before any array
// is touched.

#include <bittorch/io/files.h>
#include <bittorch/io/safetensors.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>

namespace bittorch::io {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the reference implementation allows

struct DtypeName {
  const char* name;
  at::ScalarType dtype;
};

constexpr DtypeName kDtypes[] = {
    {"F64", at::kDouble},
    {"F32", at::kFloat},
    {"F16", at::kHalf},
    {"BF16", at::kBFloat16},
    {"I64", at::kLong},
    {"I32", at::kInt},
    {"I16", at::kShort},
    {"I8", at::kChar},
    {"U8", at::kByte},
    {"BOOL", at::kBool},
    {"F8_E4M3", at::kFloat8_e4m3fn},
    {"F8_E5M2", at::kFloat8_e5m2},
};

at::ScalarType dtype_of(const std::string& name, const std::string& path, const std::string& tensor) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  TORCH_CHECK(false, "bittorch::io::read_safetensors: '", path, "': tensor '", tensor, "' has dtype '", name,
              "', which this reader does not take (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, "
              "F8_E5M2)");
}

const char* name_of(at::ScalarType dtype) {
  for (const auto& d : kDtypes) {
    if (dtype == d.dtype) return d.name;
  }
  TORCH_CHECK(false, "bittorch::io::write_safetensors: dtype ", dtype, " has no safetensors name");
}

uint64_t read_u64_le(const char* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

}  // namespace

const at::Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return t;
  }
  TORCH_CHECK(false, "'", path, "' holds no tensor '", name, "'");
}

bool SafetensorsFile::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& item) { return item.first == name; });
}

SafetensorsFile read_safetensors(const std::string& path) {
  const char* caller = "bittorch::io::read_safetensors";
  auto bytes = std::make_shared<std::string>(read_regular_file(path));
  TORCH_CHECK(bytes->size() >= 8, caller, ": '", path, "' is ", bytes->size(),
              " bytes, shorter than a safetensors header size (8)");
  const uint64_t header_size = read_u64_le(bytes->data());
  TORCH_CHECK(header_size <= kMaxHeaderBytes && header_size <= bytes->size() - 8, caller, ": '", path,
              "': its header size ", header_size, " exceeds the file (", bytes->size(), " bytes)",
              header_size > kMaxHeaderBytes ? " or the 100 MB a header may take" : "", ": not a safetensors file");
  const auto header = nlohmann::json::parse(bytes->begin() + 8, bytes->begin() + 8 + static_cast<int64_t>(header_size),
                                            nullptr, /*allow_exceptions=*/false);
  TORCH_CHECK(header.is_object(), caller, ": '", path, "': its header is not a JSON object");
  const uint64_t data_begin = 8 + header_size, data_size = bytes->size() - data_begin;

  SafetensorsFile file;
  file.path = path;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      TORCH_CHECK(entry.is_object(), caller, ": '", path, "': __metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        TORCH_CHECK(value.is_string(), caller, ": '", path, "': __metadata__ '", key, "' is not a string");
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const auto where = [&] { return std::string(caller) + ": '" + path + "': tensor '" + name + "'"; };
    TORCH_CHECK(entry.is_object() && entry.contains("dtype") && entry["dtype"].is_string() && entry.contains("shape") &&
                    entry["shape"].is_array() && entry.contains("data_offsets") && entry["data_offsets"].is_array() &&
                    entry["data_offsets"].size() == 2,
                where(), ": expected {\"dtype\": ..., \"shape\": [...], \"data_offsets\": [begin, end]}");
    const auto dtype = dtype_of(entry["dtype"].get<std::string>(), path, name);
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& size : entry["shape"]) {
      TORCH_CHECK(size.is_number_unsigned() && size.get<uint64_t>() <= (uint64_t{1} << 40), where(),
                  ": a size in its shape is not a non-negative integer");
      shape.push_back(size.get<int64_t>());
      numel *= size.get<uint64_t>();
      TORCH_CHECK(numel <= data_size, where(), ": its shape holds more elements than the file has bytes");
    }
    const auto& offsets = entry["data_offsets"];
    TORCH_CHECK(offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned(), where(),
                ": data_offsets are not non-negative integers");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const uint64_t span = numel * c10::elementSize(dtype);
    TORCH_CHECK(begin <= end && end <= data_size, where(), ": data_offsets [", begin, ", ", end,
                "] lie outside the file's ", data_size, " bytes of data");
    TORCH_CHECK(end - begin == span, where(), ": data_offsets span ", end - begin, " bytes, its ", entry["dtype"],
                " shape ", at::IntArrayRef(shape), " needs ", span);
    spans.push_back({begin, end, name});
    // A view of the file's bytes where the element type's alignment allows, else a copy.
    const char* data = bytes->data() + data_begin + begin;
    at::Tensor tensor;
    if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(dtype) == 0) {
      tensor = at::from_blob(
          const_cast<char*>(data), shape, [keep = bytes](void*) {}, at::TensorOptions().dtype(dtype));
    } else {
      tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
      std::memcpy(tensor.data_ptr(), data, span);
    }
    file.tensors.emplace_back(name, std::move(tensor));
  }
  // The spans tile the data: no overlap, no gap, nothing after the last.
  std::vector<size_t> order(spans.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {  // an empty tensor before one at its offset
    return std::pair{spans[a].begin, spans[a].end} < std::pair{spans[b].begin, spans[b].end};
  });
  uint64_t covered = 0;
  for (const auto i : order) {
    TORCH_CHECK(spans[i].begin >= covered, caller, ": '", path, "': tensor '", spans[i].name,
                "' overlaps the tensor before it in the data");
    TORCH_CHECK(spans[i].begin == covered, caller, ": '", path, "': ", spans[i].begin - covered,
                " bytes before tensor '", spans[i].name, "' belong to no tensor");
    covered = spans[i].end;
  }
  TORCH_CHECK(covered == data_size, caller, ": '", path, "': ", data_size - covered,
              " bytes after the last tensor belong to no tensor");
  std::vector<std::pair<std::string, at::Tensor>> ordered;  // file.tensors[i] is spans[i]'s
  for (const auto i : order) ordered.push_back(std::move(file.tensors[i]));
  file.tensors = std::move(ordered);
  return file;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const char* caller = "bittorch::io::write_safetensors";
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  std::vector<at::Tensor> arrays;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    TORCH_CHECK(name != "__metadata__" && names.insert(name).second, caller, ": '", path, "': the name '", name,
                "' is ", name == "__metadata__" ? "reserved" : "given twice");
    TORCH_CHECK(tensor.defined(), caller, ": '", path, "': tensor '", name, "' is undefined");
    const auto array = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t size = array.numel() * array.element_size();
    header[name] = {{"dtype", name_of(array.scalar_type())},
                    {"shape", array.sizes().vec()},
                    {"data_offsets", {offset, offset + size}}};
    offset += size;
    arrays.push_back(array);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);
  bytes += text;
  bytes.reserve(bytes.size() + offset);
  for (const auto& array : arrays) {
    bytes.append(static_cast<const char*>(array.const_data_ptr()), array.numel() * array.element_size());
  }
  write_file_atomically(path, bytes);
}

}  // namespace bittorch::io
