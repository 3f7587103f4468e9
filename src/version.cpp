#include <bittorch/version.h>

extern "C" const char* bittorch_version() {
  return BITTORCH_VERSION;
}
