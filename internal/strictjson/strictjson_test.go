package strictjson_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keyceremony/keyceremony/internal/strictjson"
)

type inner struct {
	Name string `json:"name"`
}

type doc struct {
	Type  string            `json:"type"`
	N     int               `json:"n"`
	Inner *inner            `json:"inner,omitempty"`
	List  []inner           `json:"list,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
	Any   any               `json:"any,omitempty"`
}

func TestUnmarshal(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // error substring; "" for success
	}{
		{"plain", `{"type":"a","n":1}`, ""},
		{"white space around", " \n{\"type\" : \"a\"}\r\n\t", ""},
		{"nested", `{"inner":{"name":"x"},"list":[{"name":"y"},{"name":"z"}]}`, ""},
		{"escaped names", `{"\u0074ype":"a"}`, ""},
		{"surrogate pair", `{"type":"\ud83d\ude00"}`, ""},
		{"same name in two objects", `{"list":[{"name":"y"},{"name":"y"}]}`, ""},
		{"duplicate", `{"type":"a","type":"b"}`, `duplicate member name "type"`},
		{"duplicate after escape", `{"type":"a","\u0074ype":"b"}`, `duplicate member name "type"`},
		{"name in other case", `{"type":"a","TYPE":"b"}`, `unknown field "TYPE"`},
		{"name in other case alone", `{"TYPE":"b"}`, `unknown field "TYPE"`},
		{"map keys that differ by case", `{"tags":{"k":"1","K":"2","\u212a":"3"}}`, ""},
		{"duplicate nested", `{"inner":{"name":"a","name":"b"}}`, `duplicate member name "name" in /inner`},
		{"duplicate in array", `{"list":[{"name":"a"},{"name":"a","name":"b"}]}`, `duplicate member name "name"`},
		{"duplicate in any", `{"any":[[{"x":1,"x":2}]]}`, `duplicate member name "x"`},
		{"duplicate in map", `{"tags":{"a":"1","a":"2"}}`, `duplicate member name "a"`},
		{"invalid utf-8 in value", "{\"type\":\"\xff\"}", "invalid UTF-8 at /type (byte 9)"},
		{"invalid utf-8 in name", "{\"\xc3\":1}", "invalid UTF-8"},
		{"overlong utf-8", "{\"type\":\"\xc0\xaf\"}", "invalid UTF-8"},
		{"lone high surrogate", `{"type":"\ud800"}`, "invalid surrogate pair"},
		{"lone low surrogate", `{"type":"\udc00x"}`, "invalid surrogate pair"},
		{"reversed pair", `{"type":"\ude00\ud83d"}`, "invalid surrogate pair"},
		{"unknown field", `{"type":"a","extra":1}`, `unknown field "extra"`},
		{"unknown nested field", `{"inner":{"name":"a","x":1}}`, `unknown field "x" in /inner`},
		{"trailing object", `{"type":"a"}{}`, "trailing data"},
		{"trailing garbage", `{"type":"a"} x`, "trailing data"},
		{"trailing comma", `{"type":"a"},`, "trailing data"},
		{"empty", ``, "unexpected end"},
		{"truncated", `{"type":"a"`, "unexpected end"},
		{"wrong type", `{"n":"1"}`, "cannot read JSON string as Go int at /n"},
		{"fraction", `{"n":1.5}`, "cannot read JSON number as Go int: invalid syntax at /n"},
		{"syntax", `{"type":'a'}`, "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := strictjson.Unmarshal([]byte(tt.in), &d)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *strictjson.Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *strictjson.Error", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// FuzzUnmarshal checks that whatever Unmarshal accepts, encoding/json (v1,
// which writes keyceremony's files) accepts and reads the same, and that
// every refusal is an *Error.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"type":"a","n":1,"inner":{"name":"x"}}`, `{"tags":{"a":"b"}}`, `{"any":[1,"x",null,true,{"y":[]}]}`,
		`{"type":"\u00e9\ud83d\ude00"}`, `{"type":"a","type":"b"}`, "{\"type\":\"\xff\"}", `{"a":1}`, `[]`, `{}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got doc
		err := strictjson.Unmarshal(b, &got)
		if err != nil {
			var se *strictjson.Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *strictjson.Error", err, err)
			}
			return
		}
		var want doc
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("strictjson accepted what encoding/json refuses: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("strictjson read %+v, encoding/json %+v", got, want)
		}
	})
}
