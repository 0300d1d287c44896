package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/keyceremony/keyceremony/ceremony"
	"github.com/keyceremony/keyceremony/ceremony/awskms"
)

func cmdCheckKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check-key", stderr, "Usage: keyceremony check-key --key ARN [--region R] [--profile P]\n\nDescribes a KMS key and, when Enabled, encrypts and decrypts a random value\nthrough KMS to prove the imported material works.\n\n")
	key := fs.String("key", "", "KMS key `ARN` or id")
	region := fs.String("region", "", "AWS `region` (default: the AWS configuration's)")
	profile := fs.String("profile", "", "AWS shared config `profile`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *key == "" || len(pos) > 0 {
		return usageError("check-key takes --key ARN")
	}
	res, err := ceremony.CheckKey(ctx, awskms.Options{Region: *region, Profile: *profile}, *key)
	if err != nil {
		return err
	}
	k := res.Key
	expiry := "does not expire"
	if k.ValidTo != nil {
		expiry = "material valid to " + k.ValidTo.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "key %s: %s, origin %s, %s\n", show(k.ARN), show(k.State), show(k.Origin), expiry)
	if !res.EncryptDecrypt {
		return fmt.Errorf("key %s is %s, not Enabled: its material is missing or expired; re-import it from the escrow", k.ARN, k.State)
	}
	fmt.Fprintln(stdout, "encrypt then decrypt through KMS: ok")
	return nil
}
