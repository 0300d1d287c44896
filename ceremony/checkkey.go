package ceremony

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"

	"github.com/keyceremony/keyceremony/ceremony/awskms"
)

// KeyCheck is what CheckKey found.
type KeyCheck struct {
	Key *awskms.Key
	// EncryptDecrypt is true when an encrypt then decrypt round trip worked.
	EncryptDecrypt bool
}

// CheckKey describes a KMS key and, when it is Enabled, proves the material
// works by encrypting a random value through KMS and decrypting it again.
func CheckKey(ctx context.Context, o awskms.Options, keyID string) (*KeyCheck, error) {
	c, err := awskms.New(ctx, o)
	if err != nil {
		return nil, err
	}
	d, err := c.Describe(ctx, keyID)
	if err != nil {
		return nil, err
	}
	res := &KeyCheck{Key: d}
	if d.State != "Enabled" {
		return res, nil
	}
	probe := make([]byte, 32)
	if _, err := rand.Read(probe); err != nil {
		return nil, err
	}
	ct, err := c.Encrypt(ctx, d.ARN, probe)
	if err != nil {
		return nil, err
	}
	pt, err := c.Decrypt(ctx, d.ARN, ct)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pt, probe) {
		return nil, fmt.Errorf("KMS key %s: decrypt did not return what was encrypted", d.ARN)
	}
	res.EncryptDecrypt = true
	return res, nil
}
