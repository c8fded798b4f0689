// docs/openapi.yaml as compiled into the daemon: CMake generates its definition from the file
// at build time (manager/openapi_document.cc.in), so an installed corrald serves the document
// without a source tree.
#pragma once

#include <string_view>

namespace corral {

// The whole document, YAML text. Static storage; safe from any thread.
extern const std::string_view kOpenApiDocument;

}  // namespace corral
