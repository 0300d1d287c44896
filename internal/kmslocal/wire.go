package kmslocal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// epochTime is a timestamp on the AWS JSON 1.1 wire: seconds since the Unix
// epoch as a JSON number, possibly with a fraction. The server keeps
// millisecond precision, as the SDK does.
type epochTime struct{ time.Time }

// maxEpochSeconds keeps parsed timestamps far from int64 overflow (year 5138).
const maxEpochSeconds = 1e11

// UnmarshalJSON implements [json.Unmarshaler].
func (t *epochTime) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > maxEpochSeconds {
		return fmt.Errorf("timestamp must be epoch seconds as a JSON number, got %.40s", b)
	}
	t.Time = time.UnixMilli(int64(math.Round(f * 1000))).UTC()
	return nil
}

// MarshalJSON implements [json.Marshaler].
func (t epochTime) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(t.UnixMilli())/1000, 'f', -1, 64), nil
}

// decodeInput decodes a request body into in. Unknown members are ignored,
// like AWS does for members newer than the server; an empty body is {}.
func decodeInput(body []byte, in any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, in); err != nil {
		return newError(excSerialization, "could not parse the request body as JSON for this operation: %v", err)
	}
	return nil
}
