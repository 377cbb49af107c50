package quant

import (
	"math/rand/v2"
	"testing"
)

const benchDim = 384 // all-MiniLM-L6-v2

var (
	sinkI32 int32
	sinkF32 float32
	sinkInt int
	sinkRes []Result
)

// perVector reports ns per processed vector next to ns/op.
func perVector(b *testing.B, vectorsPerOp int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(vectorsPerOp), "ns/vector")
}

func benchVectors(n int) [][]float32 {
	return randUnitVectors(rand.New(rand.NewPCG(71, 72)), n, benchDim)
}

func BenchmarkQuantizeInt8(b *testing.B) {
	x := benchVectors(1)[0]
	dst := make([]int8, benchDim)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := QuantizeInt8Into(dst, x); err != nil {
			b.Fatal(err)
		}
	}
	perVector(b, 1)
}

func BenchmarkCalibratedQuantize(b *testing.B) {
	vs := benchVectors(1000)
	c, err := Calibrate(vs)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]int8, benchDim)
	for _, mode := range []struct {
		name     string
		quantize func([]int8, []float32) error
	}{{"round", c.QuantizeInto}, {"st", c.QuantizeSTInto}} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := mode.quantize(dst, vs[7]); err != nil {
					b.Fatal(err)
				}
			}
			perVector(b, 1)
		})
	}
}

func BenchmarkPackBinary(b *testing.B) {
	x := benchVectors(1)[0]
	b.Run("bytes", func(b *testing.B) {
		dst := make([]byte, BinaryBytes(benchDim))
		b.ReportAllocs()
		for b.Loop() {
			if err := PackBinaryInto(dst, x); err != nil {
				b.Fatal(err)
			}
		}
		perVector(b, 1)
	})
	b.Run("words", func(b *testing.B) {
		dst := make([]uint64, BinaryWords(benchDim))
		b.ReportAllocs()
		for b.Loop() {
			if err := PackBinaryWordsInto(dst, x); err != nil {
				b.Fatal(err)
			}
		}
		perVector(b, 1)
	})
}

func BenchmarkDotInt8(b *testing.B) {
	rng := rand.New(rand.NewPCG(73, 74))
	x, y := randInt8s(rng, benchDim), randInt8s(rng, benchDim)
	b.ReportAllocs()
	for b.Loop() {
		sinkI32 = DotInt8(x, y)
	}
	perVector(b, 1)
}

func BenchmarkDotFloat32(b *testing.B) {
	vs := benchVectors(2)
	b.ReportAllocs()
	for b.Loop() {
		sinkF32 = DotFloat32(vs[0], vs[1])
	}
	perVector(b, 1)
}

func BenchmarkHamming(b *testing.B) {
	vs := benchVectors(2)
	x, _ := PackBinaryWords(vs[0])
	y, _ := PackBinaryWords(vs[1])
	xb, _ := PackBinary(vs[0])
	yb, _ := PackBinary(vs[1])
	b.Run("words", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkInt = Hamming(x, y)
		}
		perVector(b, 1)
	})
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkInt = HammingBytes(xb, yb)
		}
		perVector(b, 1)
	})
}

// BenchmarkSearch scans 10,000 vectors per query, one goroutine ("single")
// and GOMAXPROCS goroutines sharing the matrices ("parallel").
func BenchmarkSearch(b *testing.B) {
	const n, k = 10000, 10
	db := benchVectors(n + 64)
	queries, db := db[n:], db[:n]
	im, err := QuantizeInt8Matrix(db)
	if err != nil {
		b.Fatal(err)
	}
	bm, err := PackBinaryMatrix(db)
	if err != nil {
		b.Fatal(err)
	}
	searches := []struct {
		name   string
		search func([]float32, int) ([]Result, error)
	}{
		{"float", func(q []float32, k int) ([]Result, error) { return SearchFloat(db, q, k) }},
		{"int8", im.Search},
		{"binary", bm.Search},
		{"binary-asymmetric", bm.SearchAsymmetric},
	}
	for _, s := range searches {
		b.Run(s.name+"/single", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r, err := s.search(queries[i%len(queries)], k)
				if err != nil {
					b.Fatal(err)
				}
				sinkRes = r
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/query")
			perVector(b, n)
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := s.search(queries[i%len(queries)], k); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/query")
		})
	}
}

// BenchmarkRescore ranks 40 candidates, the 4x rescoring step after a
// binary search for 10.
func BenchmarkRescore(b *testing.B) {
	vs := benchVectors(41)
	q := vs[40]
	fc := make([]FloatCandidate, 40)
	bc := make([]BinaryCandidate, 40)
	for i := range fc {
		fc[i] = FloatCandidate{ID: int64(i), Vector: vs[i]}
		w, _ := PackBinaryWords(vs[i])
		bc[i] = BinaryCandidate{ID: int64(i), Words: w}
	}
	b.Run("float", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkRes, _ = RescoreFloat(q, fc, 10)
		}
		perVector(b, len(fc))
	})
	b.Run("bits", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkRes, _ = RescoreBinary(q, bc, 10)
		}
		perVector(b, len(bc))
	})
}
