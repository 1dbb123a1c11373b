// The header must compile as C++ (extern "C", enum with a fixed underlying type).
#include "tmac.h"

#include <cstdio>

int main() {
    tmac_params p = tmac_params_default();
    tmac *t = nullptr;
    tmac_status s = tmac_load(nullptr, &p, &t);
    std::printf("%s %s\n", tmac_version(), tmac_status_str(s));
    tmac_free(t);
    return s == TMAC_ERR_NULL_ARG ? 0 : 1;
}
