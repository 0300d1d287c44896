package events

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/keyceremony/keyceremony/internal/strictjson"
)

// fill sets every field of v (a pointer to a struct) to a value that is
// not its zero value, so that a round trip shows every field.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		v.SetMapIndex(k, e)
	case reflect.Slice:
		if v.Type() == reflect.TypeOf(json.RawMessage{}) {
			v.SetBytes([]byte(`{"x":1}`))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int:
		v.SetInt(7)
	case reflect.Uint8:
		v.SetUint(7)
	}
}

// TestRoundTrip: every event, written as the writer writes it
// (encoding/json), reads back through the strict decoder to the same
// value, with every field tagged.
func TestRoundTrip(t *testing.T) {
	for _, d := range all {
		t.Run(d.Step(), func(t *testing.T) {
			typ := reflect.TypeOf(d).Elem()
			for i := range typ.NumField() {
				if tag := typ.Field(i).Tag.Get("json"); tag == "" {
					t.Errorf("field %s has no json tag", typ.Field(i).Name)
				}
			}
			in := reflect.New(typ)
			fill(in.Elem())
			b, err := json.Marshal(in.Interface())
			if err != nil {
				t.Fatal(err)
			}
			out, ok := New(d.Step())
			if !ok {
				t.Fatalf("New(%q) has no type", d.Step())
			}
			if err := strictjson.Unmarshal(b, out); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(in.Interface(), out) {
				t.Fatalf("wrote %+v, read %+v", in.Interface(), out)
			}
		})
	}
	if _, ok := New("teleport"); ok {
		t.Error("New made data for an unknown event")
	}
}
