/* A stand-in for Windows' bcryptprimitives.dll, only for running the Windows executable under
 * Debian's Wine 8 in CI (.ci/wine/run): Rust's standard library imports ProcessPrng from that
 * DLL, which Wine 8 lacks, so the executable would not load. This one function fills the buffer
 * from RtlGenRandom (advapi32's SystemFunction036), which Wine has. Never shipped: Windows has
 * the real DLL.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c -ladvapi32
 */
#include <windows.h>

/* RtlGenRandom's real name; ntsecapi.h only declares it under the macro. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    /* RtlGenRandom takes a ULONG length: fill a large buffer piece by piece. */
    while (length > 0) {
        ULONG piece = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, piece)) {
            return FALSE;
        }
        data += piece;
        length -= piece;
    }
    return TRUE;
}
