package hsm

// #include <stdlib.h>
import "C"

import (
	"unsafe"

	"github.com/miekg/pkcs11"
)

// initArgs is a module's initialisation parameter string in C memory, for
// C_Initialize's pReserved: the module may keep the pointer until
// C_Finalize, which Go memory does not allow.
type initArgs struct{ p *C.char }

func newInitArgs(s string) *initArgs {
	if s == "" {
		return nil
	}
	return &initArgs{p: C.CString(s)}
}

func (a *initArgs) options() []pkcs11.InitializeOption {
	if a == nil {
		return nil
	}
	return []pkcs11.InitializeOption{pkcs11.InitializeWithReserved(unsafe.Pointer(a.p))}
}

// free releases the string; call it only after C_Finalize.
func (a *initArgs) free() {
	if a != nil && a.p != nil {
		C.free(unsafe.Pointer(a.p))
		a.p = nil
	}
}
