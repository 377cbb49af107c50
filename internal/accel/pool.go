package accel

import "math"

// pool writes the pooled vector of one row's token states ([seq, hid], the
// first valid positions unmasked) into acc.
func pool(p Pooling, states []float32, valid, hid int, acc []float32) {
	if p == PoolCLS {
		copy(acc, states[:hid])
		return
	}
	clear(acc)
	for t := 0; t < valid; t++ {
		row := states[t*hid : (t+1)*hid]
		for k, v := range row {
			acc[k] += v
		}
	}
	inv := 1 / float32(max(valid, 1))
	for k := range acc {
		acc[k] *= inv
	}
}

// normalizeRows L2-normalizes each hid-wide row of vecs in place and writes
// its norm before normalization to norms. A row whose norm is below 1e-12
// is left as it is, with norm 0 if it is exactly zero.
func normalizeRows(vecs, norms []float32, hid int) {
	for i := range norms {
		row := vecs[i*hid : (i+1)*hid]
		var ss float64
		for _, x := range row {
			ss += float64(x) * float64(x)
		}
		norm := math.Sqrt(ss)
		norms[i] = float32(norm)
		if norm < 1e-12 {
			continue
		}
		inv := float32(1 / norm)
		for k := range row {
			row[k] *= inv
		}
	}
}
