// The one place that includes libfuse: fixes the API version strata is written
// against (3.14, Debian 12's) before the header is read. Internal to fuse/.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
