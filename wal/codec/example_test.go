package codec_test

import (
	"errors"
	"fmt"

	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

func Example() {
	h := codec.Header{
		Kind:        codec.KindData,
		Compression: codec.CompressionNone,
		LogID:       1, Segment: 0, Seq: 7, Epoch: 3, Nonce: 0x5eed,
		FirstIndex: 100, Count: 2,
	}
	obj, err := codec.AppendFragment(nil, h, [][]byte{[]byte("a=1"), []byte("b=2")})
	if err != nil {
		panic(err)
	}
	key := codec.FragmentKey("wp/logs/raft1", h.Segment, h.Seq)

	f, err := codec.Decode(obj)
	if err != nil {
		panic(codec.WithObject(err, key))
	}
	fmt.Println(key)
	for i := 0; i < f.Len(); i++ {
		fmt.Printf("%d: %s\n", f.Header.FirstIndex+uint64(i), f.Entry(i))
	}

	obj[len(obj)-1] ^= 0x10 // one flipped bit
	_, err = codec.Decode(obj)
	err = codec.WithObject(err, key)
	fmt.Println(errors.Is(err, codec.ErrCorrupt))
	// Output:
	// wp/logs/raft1/s/00000000000000000000/00000000000000000007
	// 100: a=1
	// 101: b=2
	// true
}

func ExampleParseFragmentKey() {
	seg, seq, ok := codec.ParseFragmentKey("wp/logs/raft1/s/00000000000000000002/00000000000000000015")
	fmt.Println(seg, seq, ok)
	_, _, ok = codec.ParseFragmentKey("wp/logs/raft1/manifest")
	fmt.Println(ok)
	// Output:
	// 2 15 true
	// false
}
