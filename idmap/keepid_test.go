package idmap

import (
	"reflect"
	"testing"
)

func TestKeepIDPodmanLayout(t *testing.T) {
	ns := Build(1001, []SubRange{{100000, 65536}})
	in := KeepID(1001, Size(ns))
	want := []Range{{0, 1, 1001}, {1001, 0, 1}, {1002, 1002, 64535}}
	if !reflect.DeepEqual(in, want) {
		t.Fatalf("KeepID: got %v want %v", in, want)
	}
	host, err := Compose(in, ns)
	if err != nil {
		t.Fatal(err)
	}
	// Container 0..1000 -> first subordinate ids, 1001 -> the caller,
	// 1002.. -> the rest of the range.
	wantHost := []Range{{0, 100000, 1001}, {1001, 1001, 1}, {1002, 101001, 64535}}
	if !reflect.DeepEqual(host, wantHost) {
		t.Fatalf("composed: got %v want %v", host, wantHost)
	}
	if Size(in) != Size(ns) {
		t.Fatalf("keep-id maps %d ids, the namespace %d", Size(in), Size(ns))
	}
}

func TestKeepIDSplitRangesAndSmallRange(t *testing.T) {
	// Two subordinate ranges: composition crosses the boundary.
	ns := Build(1000, []SubRange{{100000, 500}, {300000, 1000}})
	host, err := Compose(KeepID(1000, Size(ns)), ns)
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{0, 100000, 500}, {500, 300000, 500}, {1000, 1000, 1}, {1001, 300500, 500}}
	if !reflect.DeepEqual(host, want) {
		t.Fatalf("got %v want %v", host, want)
	}
	// Fewer subordinate ids than the uid: all of them below, a gap, the caller.
	small := KeepID(5000, 1+10)
	if w := []Range{{0, 1, 10}, {5000, 0, 1}}; !reflect.DeepEqual(small, w) {
		t.Fatalf("small: got %v want %v", small, w)
	}
	// uid 0 keeps everything in place but 0.
	if got, w := KeepID(0, 65537), []Range{{0, 0, 1}, {1, 1, 65536}}; !reflect.DeepEqual(got, w) {
		t.Fatalf("uid 0: got %v want %v", got, w)
	}
	if KeepID(1000, 1) != nil {
		t.Fatal("single-id namespace: want nil")
	}
	if _, err := Compose([]Range{{0, 5, 10}}, []Range{{0, 1000, 8}}); err == nil {
		t.Fatal("want an error for an unmapped id")
	}
}
