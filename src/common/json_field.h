#pragma once

// Reading the JSON objects the library writes (nlohmann-json, private to libbittorch): below
// every layer, depending on nothing of BitTorch.

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

namespace bittorch {

/// Field `name` of `json` as a T; a missing or mistyped one is a c10::Error "`what`: field
/// 'name': ...".
template <typename T>
T json_field(const nlohmann::json& json, const char* name, const char* what) {
  try {
    return json.at(name).get<T>();
  } catch (const nlohmann::json::exception& error) {
    TORCH_CHECK(false, what, ": field '", name, "': ", error.what());
  }
}

}  // namespace bittorch
