#pragma once

namespace corral {

// Reported by `corrald --version`, `corral-run --version` and GET /healthz.
inline constexpr const char kVersion[] = "0.1.0";

}  // namespace corral
