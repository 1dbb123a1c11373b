/* Found through pkg-config's -I (the installed include/tmac.h). */
#include <tmac.h>
