package drift

import "math"

// This file computes the survival function of the two-sided one-sample
// Kolmogorov-Smirnov statistic, P(D_n >= x), exactly as SciPy 1.16 does in
// scipy.stats.kstwo.sf (scipy/stats/_ksstats.py, _kolmogn with cdf=False):
// the Simard & L'Ecuyer (2011) switch between the Ruben-Gambino closed forms,
// the Durbin matrix algorithm (Marsaglia-Tsang-Wang), the Pomeranz
// recursion, the Pelz-Good asymptotic series and twice the one-sided Smirnov
// survival function. ks_2samp(method="asymp") evaluates it at
// n = round(n1*n2/(n1+n2)); see KSTest.
//
// The branch points and every formula follow SciPy line by line so the
// golden tests can hold the result to 1e-6 relative. The one deliberate
// difference is smirnovSF: SciPy sums the Birnbaum-Tingey series in
// double-double arithmetic; here each positive term is formed in log space
// in float64, which keeps ~1e-11 relative accuracy for the sample sizes
// this package allows (the golden tests check 1e-6) and is far simpler.

// Rescaling of intermediate results by powers of two, as in SciPy.
const (
	ksE128  = 128
	ksEP128 = 0x1p128
	ksEM128 = 0x1p-128
)

const (
	ksLog2Pi   = 1.8378770664093453 // log(2*pi)
	ksSqrt2Pi  = 2.5066282746310002 // sqrt(2*pi)
	ksMinLog   = -708               // _MIN_LOG in _ksstats.py
	ksSqrt3    = 1.7320508075688772
	ksPiSq     = math.Pi * math.Pi
	ksPi4      = ksPiSq * ksPiSq
	ksPi6      = ksPi4 * ksPiSq
	cephMinLog = -7.451332191019412076235e2 // log(2**-1075), xsf cephes MINLOG
)

func clip01(p float64) float64 {
	if p < 0 {
		return 0
	}
	if p > 1 {
		return 1
	}
	return p
}

// kstwoSF returns P(D_n >= x) for the two-sided one-sample KS statistic with
// sample size n (scipy.stats.kstwo.sf(x, n)). It returns NaN for n < 1.
func kstwoSF(n int, x float64) float64 {
	if n < 1 || math.IsNaN(x) {
		return math.NaN()
	}
	if x >= 1 {
		return 0
	}
	if x <= 0 {
		return 1
	}
	fn := float64(n)
	t := fn * x
	if t <= 1 { // Ruben-Gambino: 1/2n <= x <= 1/n
		if t <= 0.5 {
			return 1
		}
		var prob float64
		if n <= 140 {
			prob = 1
			for i := 1; i <= n; i++ {
				prob *= float64(i) * (1.0 / fn) * (2*t - 1)
			}
		} else {
			prob = math.Exp(logNFactorialDivNPowN(fn) + fn*math.Log(2*t-1))
		}
		return clip01(1 - prob)
	}
	if t >= fn-1 { // Ruben-Gambino
		return clip01(2 * math.Pow(1-x, fn))
	}
	if x >= 0.5 { // exact: 2 * smirnov
		return clip01(2 * smirnovSF(n, x))
	}
	nxsq := t * x
	if n <= 140 {
		if nxsq <= 0.754693 {
			return clip01(1 - kolmogDurbin(n, x))
		}
		if nxsq <= 4 {
			return clip01(1 - kolmogPomeranz(n, x))
		}
		return clip01(2 * smirnovSF(n, x))
	}
	if nxsq >= 370 {
		return 0
	}
	if nxsq >= 2.2 {
		return clip01(2 * smirnovSF(n, x))
	}
	var cdf float64
	switch {
	case nxsq >= 18:
		cdf = 1
	case n <= 100000 && fn*math.Pow(x, 1.5) <= 1.4:
		cdf = kolmogDurbin(n, x)
	default:
		cdf = kolmogPelzGood(n, x)
	}
	return clip01(1 - clip01(cdf))
}

// logNFactorialDivNPowN is log(n!/n^n) by Stirling's series with n*log(n)
// removed up front (no cancellation).
func logNFactorialDivNPowN(n float64) float64 {
	coeffs := [...]float64{-2.955065359477124183e-2, 6.4102564102564102564e-3,
		-1.9175269175269175269e-3, 8.4175084175084175084e-4,
		-5.952380952380952381e-4, 7.9365079365079365079e-4,
		-2.7777777777777777778e-3, 8.3333333333333333333e-2}
	rn := 1.0 / n
	u := rn / n
	poly := 0.0
	for _, c := range coeffs {
		poly = poly*u + c
	}
	return math.Log(n)/2 - n + ksLog2Pi/2 + rn*poly
}

// kolmogDurbin is P(D_n <= d) by the Durbin matrix algorithm in the
// Marsaglia-Tsang-Wang form: the k-th diagonal entry of (n!/n^n) H^n with
// m = 2k-1, k = ceil(n d), rescaling by 2^128 to stay in range.
func kolmogDurbin(n int, d float64) float64 {
	if d >= 1 {
		return 1
	}
	fn := float64(n)
	nd := fn * d
	if nd <= 0.5 {
		return 0
	}
	k := int(math.Ceil(nd))
	h := float64(k) - nd
	m := 2*k - 1

	v := make([]float64, m)
	w := make([]float64, m)
	for j := 1; j <= m; j++ {
		v[j-1] = 1 - math.Pow(h, float64(j))
	}
	fac := 1.0
	for j := 1; j <= m; j++ {
		w[j-1] = fac
		fac /= float64(j)
		v[j-1] *= fac
	}
	tt := math.Pow(math.Max(2*h-1, 0), float64(m)) - 2*math.Pow(h, float64(m))
	v[m-1] = (1 + tt) * fac

	H := newSquare(m)
	for i := 1; i < m; i++ {
		for r := i - 1; r < m; r++ {
			H.set(r, i, w[r-(i-1)])
		}
	}
	for r := 0; r < m; r++ {
		H.set(r, 0, v[r])
	}
	for c := 0; c < m; c++ {
		H.set(m-1, c, v[m-1-c])
	}

	pwr := identity(m)
	nn := n
	expnt, hexpnt := 0, 0
	tmp := newSquare(m)
	for nn > 0 {
		if nn%2 == 1 {
			mul(tmp, pwr, H)
			pwr, tmp = tmp, pwr
			expnt += hexpnt
		}
		mul(tmp, H, H)
		H, tmp = tmp, H
		hexpnt *= 2
		if math.Abs(H.at(k-1, k-1)) > ksEP128 {
			for i := range H.a {
				H.a[i] /= ksEP128
			}
			hexpnt += ksE128
		}
		nn /= 2
	}
	p := pwr.at(k-1, k-1)
	for i := 1; i <= n; i++ {
		p = float64(i) * p / fn
		if math.Abs(p) < ksEM128 {
			p *= ksEP128
			expnt -= ksE128
		}
	}
	if expnt != 0 {
		p = math.Ldexp(p, expnt)
	}
	return clip01(p)
}

// square is a dense row-major m x m matrix for kolmogDurbin.
type square struct {
	m int
	a []float64
}

func newSquare(m int) square             { return square{m: m, a: make([]float64, m*m)} }
func (s square) at(r, c int) float64     { return s.a[r*s.m+c] }
func (s square) set(r, c int, x float64) { s.a[r*s.m+c] = x }

func identity(m int) square {
	s := newSquare(m)
	for i := 0; i < m; i++ {
		s.set(i, i, 1)
	}
	return s
}

// mul sets dst = x*y; dst must not alias x or y.
func mul(dst, x, y square) {
	m := dst.m
	for i := range dst.a {
		dst.a[i] = 0
	}
	for i := 0; i < m; i++ {
		row := dst.a[i*m : (i+1)*m]
		for l := 0; l < m; l++ {
			xil := x.a[i*m+l]
			if xil == 0 {
				continue
			}
			yrow := y.a[l*m : (l+1)*m]
			for j := range row {
				row[j] += xil * yrow[j]
			}
		}
	}
}

// pomeranzJ1J2 is the interval of non-zero entries of row i.
func pomeranzJ1J2(i, n, ll, ceilf, roundf int) (int, int) {
	var j1, j2 int
	if i == 0 {
		j1, j2 = -ll-ceilf-1, ll+ceilf-1
	} else {
		ip1div2, ip1mod2 := (i+1)/2, (i+1)%2
		if ip1mod2 == 0 { // i is odd
			if ip1div2 == n+1 {
				j1, j2 = n-ll-ceilf-1, n+ll+ceilf-1
			} else {
				j1, j2 = ip1div2-1-ll-roundf-1, ip1div2+ll-1+ceilf-1
			}
		} else {
			j1, j2 = ip1div2-1-ll-1, ip1div2+ll+roundf-1
		}
	}
	return max(j1+2, 0), min(j2, n)
}

// kolmogPomeranz is P(D_n <= x) by the Pomeranz (1974) recursion: each row
// is the convolution of the previous one with (almost) Poisson
// probabilities; the answer is n! times the last entry of the last row.
func kolmogPomeranz(n int, x float64) float64 {
	fn := float64(n)
	t := fn * x
	ll := int(math.Floor(t))
	f := t - float64(ll)
	g := math.Min(f, 1-f)
	ceilf, roundf := 0, 0
	if f > 0 {
		ceilf = 1
	}
	if f > 0.5 {
		roundf = 1
	}
	npwrs := 2 * (ll + 1)
	gpower := make([]float64, npwrs)
	twogpower := make([]float64, npwrs)
	onem2gpower := make([]float64, npwrs)
	gpower[0], twogpower[0], onem2gpower[0] = 1, 1, 1
	gOverN, twoGOverN, oneMinusTwoGOverN := g/fn, 2*g/fn, (1-2*g)/fn
	for m := 1; m < npwrs; m++ {
		fm := float64(m)
		gpower[m] = gpower[m-1] * gOverN / fm
		twogpower[m] = twogpower[m-1] * twoGOverN / fm
		onem2gpower[m] = onem2gpower[m-1] * oneMinusTwoGOverN / fm
	}

	V0 := make([]float64, npwrs)
	V1 := make([]float64, npwrs)
	V1[0] = 1
	V0s, V1s := 0, 0
	expnt := 0
	conv := make([]float64, 2*npwrs)

	j1, j2 := pomeranzJ1J2(0, n, ll, ceilf, roundf)
	for i := 1; i < 2*n+2; i++ {
		k1 := j1
		V0, V1 = V1, V0
		V0s, V1s = V1s, V0s
		for j := range V1 {
			V1[j] = 0
		}
		j1, j2 = pomeranzJ1J2(i, n, ll, ceilf, roundf)
		pwrs := onem2gpower
		switch {
		case i == 1 || i == 2*n+1:
			pwrs = gpower
		case i%2 == 1:
			pwrs = twogpower
		}
		ln2 := j2 - k1 + 1
		if ln2 <= 0 {
			continue
		}
		// conv = np.convolve(V0[k1-V0s : k1-V0s+ln2], pwrs[:ln2]) ("full").
		lo := k1 - V0s
		hi := min(lo+ln2, npwrs)
		a := V0[lo:hi]
		b := pwrs[:min(ln2, npwrs)]
		nc := len(a) + len(b) - 1
		for c := 0; c < nc; c++ {
			s := 0.0
			for p := max(0, c-len(b)+1); p <= min(c, len(a)-1); p++ {
				s += a[p] * b[c-p]
			}
			conv[c] = s
		}
		convStart := j1 - k1
		convLen := j2 - j1 + 1
		maxV := 0.0
		for j := 0; j < convLen && convStart+j < nc; j++ {
			V1[j] = conv[convStart+j]
			maxV = math.Max(maxV, V1[j])
		}
		if maxV > 0 && maxV < ksEM128 {
			for j := range V1 {
				V1[j] *= ksEP128
			}
			expnt -= ksE128
		}
		V1s = V0s + j1 - k1
	}
	ans := V1[n-V1s]
	for m := 1; m <= n; m++ {
		if math.Abs(ans) > ksEP128 {
			ans *= ksEM128
			expnt += ksE128
		}
		ans *= float64(m)
	}
	if expnt != 0 {
		ans = math.Ldexp(ans, expnt)
	}
	return clip01(ans)
}

// kolmogPelzGood is the Pelz-Good (1976) approximation to P(D_n <= x): the
// Li-Chien/Korolyuk expansion K0 + K1/sqrt(n) + K2/n + K3/n^1.5 rewritten
// with Jacobi theta identities for small z = x sqrt(n).
func kolmogPelzGood(n int, x float64) float64 {
	if x <= 0 {
		return 0
	}
	if x >= 1 {
		return 1
	}
	fn := float64(n)
	z := math.Sqrt(fn) * x
	zsq, z3, z4, z6 := z*z, z*z*z, math.Pow(z, 4), math.Pow(z, 6)

	qlog := -ksPiSq / 8 / zsq
	if qlog < ksMinLog {
		return 0
	}
	q := math.Exp(qlog)

	k1a := -zsq
	k1b := ksPiSq / 4
	k2a := 6*z6 + 2*z4
	k2b := (2*z4 - 5*zsq) * ksPiSq / 4
	k2c := ksPi4 * (1 - 2*zsq) / 16
	k3d := ksPi6 * (5 - 30*zsq) / 64
	k3c := ksPi4 * (-60*zsq + 212*z4) / 16
	k3b := ksPiSq * (135*z4 - 96*z6) / 4
	k3a := -30*z6 - 90*math.Pow(z, 8)

	var K [4]float64
	maxk := int(math.Ceil(16 * z / math.Pi))
	for k := maxk; k > 0; k-- {
		m := float64(2*k - 1)
		msq, m4, m6 := m*m, math.Pow(m, 4), math.Pow(m, 6)
		qpower := math.Pow(q, float64(8*k))
		c := [4]float64{
			1,
			k1a + k1b*msq,
			k2a + k2b*msq + k2c*m4,
			k3a + k3b*msq + k3c*m4 + k3d*m6,
		}
		for i := range K {
			K[i] = K[i]*qpower + c[i]
		}
	}
	div := [4]float64{z, 6 * z4, 72 * math.Pow(z, 7), 6480 * math.Pow(z, 10)}
	for i := range K {
		K[i] *= q
		K[i] *= ksSqrt2Pi
		K[i] /= div[i]
	}

	q = math.Exp(-ksPiSq / 2 / zsq)
	sqrt3z := ksSqrt3 * z
	var k2extra, k3extra float64
	for k := maxk; k > 0; k-- {
		fk := float64(k)
		ksq := fk * fk
		qp := math.Pow(q, ksq)
		k2extra += ksq * qp
		kspi := math.Pi * fk
		k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp
	}
	k2extra *= ksPiSq * ksSqrt2Pi / (-36 * z3)
	K[2] += k2extra
	k3extra *= ksPiSq * ksSqrt2Pi / (216 * z6)
	K[3] += k3extra
	sum := 0.0
	for i := range K {
		sum += K[i] / math.Pow(fn, float64(i)/2)
	}
	return sum
}

// smirnovSF is the one-sided Smirnov survival function P(D_n^+ >= x)
// (scipy.special.smirnov) by the Birnbaum-Tingey sum
//
//	x * sum_{v=0}^{floor(n(1-x))} C(n,v) (1-x-v/n)^(n-v) (x+v/n)^(v-1)
//
// of positive terms, each formed in log space. kstwoSF calls it only where
// SciPy uses this lower sum (n x^2 >= 2.2, or x >= 0.5, or n <= 140 with
// n x^2 > 4), never in SciPy's alternating upper-sum region x <= 0.5/sqrt(n).
func smirnovSF(n int, x float64) float64 {
	if n < 1 || !(x >= 0 && x <= 1) {
		return math.NaN()
	}
	if n == 1 {
		return 1 - x
	}
	if x == 0 {
		return 1
	}
	if x == 1 {
		return 0
	}
	fn := float64(n)
	// floor(n*x) and its remainder from the exact product hi+lo (as
	// SciPy's double-double modNX): 5*0.6 rounds to 3 in float64 but is
	// just below 3, which changes the number of terms.
	hi := fn * x
	lo := math.FMA(fn, x, -hi)
	fl := math.Floor(hi)
	if hi == fl && lo < 0 {
		fl--
	}
	alpha := (hi - fl) + lo
	nxfl := int(fl)
	if alpha >= 1 {
		nxfl++
		alpha = 0
	}
	if nxfl == 0 || (nxfl == 1 && alpha == 0) { // x <= 1/n
		return 1 - x*math.Pow(1+x, fn-1)
	}
	if -2*fn*x*x < cephMinLog {
		return 0
	}
	if nxfl >= n-1 {
		return math.Pow(1-x, fn)
	}
	// Terms v = 0..last: last = floor(n(1-x)), less the zero term
	// 1-x-v/n = 0 when n*x is whole.
	last := n - nxfl - 1
	sum := math.Pow(1-x, fn) / x // v = 0
	logC := 0.0                  // log C(n, v), updated by the ratio (n-v+1)/v
	for v := 1; v <= last; v++ {
		fv := float64(v)
		logC += math.Log(float64(n-v+1) / fv)
		t2x := float64(n-v)/fn - x
		t1x := fv/fn + x
		if t2x <= 0 {
			break
		}
		la := logC + (fn-fv)*math.Log(t2x) + (fv-1)*math.Log(t1x)
		a := math.Exp(la)
		sum += a
		// The terms are unimodal in v; stop once the rest cannot matter
		// (SciPy's rule).
		if a != 0 && 4*float64(last+1-v)*a < 0x1p-52*sum && v != last {
			break
		}
	}
	return clip01(x * sum)
}
