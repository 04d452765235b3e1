package ngxlua

/*
#include <dlfcn.h>
#include <stdlib.h>

static int sp_load_global(const char *name) {
	return dlopen(name, RTLD_NOW | RTLD_GLOBAL) != NULL;
}
*/
import "C"

import (
	"sync"
	"unsafe"
)

// loadCrypto makes OpenSSL's libcrypto visible to LuaJIT's ffi.C, as it is in an
// nginx binary linked with OpenSSL: lua-resty-string's resty.md5, sha*, aes and
// random call MD5_Init, EVP_* and RAND_bytes through ffi.C. spindle's own TLS is
// Go's, so the library is loaded (RTLD_GLOBAL) when present rather than linked:
// without it those modules fail on their first call, as they would in an nginx
// built without OpenSSL.
var loadCrypto = sync.OnceValue(func() bool {
	for _, name := range []string{"libcrypto.so.3", "libcrypto.so"} {
		cs := C.CString(name)
		ok := C.sp_load_global(cs) != 0
		C.free(unsafe.Pointer(cs))
		if ok {
			return true
		}
	}
	return false
})
