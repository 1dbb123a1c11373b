/* arm_hwcap: print the SIMD features Linux (or qemu-user) reports to an aarch64 process, the
 * bits Rust's std::arch::is_aarch64_feature_detected! reads. `make test-aarch64` prints them for
 * each emulated CPU and checks that QEMU_CPU took effect (cortex-a72: no dotprod; a76: dotprod). */
#include <stdio.h>
#include <sys/auxv.h>
#include <asm/hwcap.h>

int main(void) {
    unsigned long h = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    printf("asimd=%d fp16=%d dotprod=%d i8mm=%d sve=%d\n", !!(h & HWCAP_ASIMD),
           !!(h & HWCAP_ASIMDHP), !!(h & HWCAP_ASIMDDP), !!(h2 & HWCAP2_I8MM), !!(h & HWCAP_SVE));
    return 0;
}
