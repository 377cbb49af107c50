// Package hybrid merges an entity's embedding with chosen numeric features
// into one unit vector, so a single cosine (inner-product) search ranks by a
// fixed blend of embedding similarity and feature similarity. Hybrid
// vectors live in their own vector collection (one per Spec and statistics
// version); Merger.Query builds the matching query vector.
//
// # Formula
//
// Given a Spec {Features x_1..x_k, Weights w_i (default 1), Alpha α in
// [0,1], Dims d, Clip c (default 5)} and a Standardizer holding each
// feature's running mean μ_i and sample standard deviation σ_i:
//
//	e   = v / ||v||                        v: the d-dim embedding (||v|| > 0)
//	z_i = clip((x_i - μ_i) / σ_i, -c, c)   z_i = 0 if σ_i = 0 or x_i is missing
//	u   = (w_1 z_1, ..., w_k z_k)          i.e. w ⊙ z
//	f   = u / ||u||                        f = 0 if ||u|| = 0
//	g   = concat(sqrt(1-α) · e, sqrt(α) · f)
//	h   = g / ||g||                        d + k dims
//
// ||g||² = (1-α) + α·[u ≠ 0], so the final normalisation changes g only
// when the feature part is zero (then h = (e, 0)), and g = 0 (α = 1 with
// u = 0) is an error. Missing features are reported with each Vector.
//
// # Why this design
//
// For two entities whose feature parts are non-zero, e and f are unit
// vectors, so h_a and h_b are unit vectors and
//
//	dot(h_a, h_b) = (1-α) · cos(e_a, e_b) + α · cos(f_a, f_b)
//
// exactly: α is literally the weight of feature similarity in the score,
// independent of d and k, and the score stays in [-1, 1] as a cosine
// index expects. Standardising first puts features of different units on
// one scale; clipping at c keeps one outlier from owning the feature
// direction; the weights w choose which features matter within the feature
// part. Normalising u (rather than appending raw z) is what keeps the blend
// fixed: otherwise the feature share of the score would grow with k and
// with how unusual an entity is. The cost: cos(f_a, f_b) compares the
// direction of the weighted z-vectors, not their distance, so with a single
// feature it only says whether both entities sit on the same side of the
// mean; use several features or accept that coarseness.
//
// Zero feature part: a query built without feature values is (e_q, 0) and
// scores sqrt(1-α)·cos(e_q, e_b) against every stored vector with features,
// the same ranking as plain embedding search. A stored entity whose feature
// part is zero (every feature missing, at its mean, constant or weighted 0)
// is (e_b, 0) and scores sqrt(1-α)·cos(e_q, e_b) against a query with
// features, where the identity would give (1-α)·cos + α·cos(f) with cos(f)
// undefined; the renormalisation is required anyway, since the vector
// stores compare by cosine and normalise every vector. Vector.Missing
// reports such entities so callers can impute values before merging.
//
// # Statistics versions
//
// z depends on μ and σ, so vectors in one collection must all be built with
// the same statistics. Standardizer.Version is a content hash, identical on
// every replica that restored the same Snapshot; each Vector carries it.
// Freeze the Standardizer before filling a collection, ship its Snapshot to
// every replica (and across restarts), and rebuild the collection when the
// statistics change.
//
// Invariants: every Vector has Dims() = d + k finite values of unit norm
// (float32 rounding aside); inputs with NaN or ±Inf, a wrong length or a
// zero embedding are rejected with the index or feature named; sizes are
// bounded by MaxFeatures, MaxDims, MaxNameBytes and MaxBatch.
//
// Concurrency: Standardizer and Merger are safe for concurrent use; a
// Merger reads a consistent (μ, σ, version) view of its Standardizer for
// each vector.
package hybrid
