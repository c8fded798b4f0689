#include "manager/version.h"

// The manager library's anchor translation unit; keeps the version in one object.
namespace corral {
const char* VersionString() { return kVersion; }
}  // namespace corral
