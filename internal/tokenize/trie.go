package tokenize

import "slices"

// trie is a byte trie over the WordPiece vocabulary, for WordPiece's longest-match-first
// search: one walk along a word finds the longest vocabulary entry it starts with, where
// probing a map would hash every shorter candidate in turn.
//
// Node 0 is the root. A node's children are edges[first:first+count], sorted by label;
// nodes with many children also get a dense table, indexed by byte. Each node and edge is
// one small struct, so a step of a walk touches two cache lines at most.
type trie struct {
	nodes []trieNode
	edges []trieEdge
	// dense holds the dense tables; -1 means no child.
	dense [][256]int32
}

type trieNode struct {
	id    int32 // id of the entry ending here, or -1
	first int32
	count int32
	dense int32 // index into trie.dense, or -1
}

type trieEdge struct {
	label byte
	next  int32
}

// denseFanout is the number of children from which a node gets a dense table: below it a
// linear scan of the labels is as fast.
const denseFanout = 12

func newTrie(vocab map[string]int32) *trie {
	keys := make([]string, 0, len(vocab))
	for k := range vocab {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	// Inserting sorted keys creates nodes in depth-first order, children by label, which
	// keeps the nodes of one walk close together in memory. Children are linked lists
	// until every node exists, then become contiguous edges.
	const none = -1
	var (
		ids         = []int32{none}
		label       = []byte{0}
		firstChild  = []int32{none}
		lastChild   = []int32{none}
		nextSibling = []int32{none}
		path        = []int32{0} // path[i]: node of the previous key's first i bytes
		prev        string
	)
	for _, key := range keys {
		common := 0
		for common < len(prev) && common < len(key) && prev[common] == key[common] {
			common++
		}
		path = path[:common+1]
		for i := common; i < len(key); i++ {
			parent, n := path[len(path)-1], int32(len(ids))
			ids, label = append(ids, none), append(label, key[i])
			firstChild, lastChild, nextSibling = append(firstChild, none), append(lastChild, none), append(nextSibling, none)
			if lastChild[parent] == none {
				firstChild[parent] = n
			} else {
				nextSibling[lastChild[parent]] = n
			}
			lastChild[parent] = n
			path = append(path, n)
		}
		ids[path[len(path)-1]] = vocab[key]
		prev = key
	}

	t := &trie{nodes: make([]trieNode, len(ids)), edges: make([]trieEdge, 0, len(ids)-1)}
	for n := range t.nodes {
		node := trieNode{id: ids[n], first: int32(len(t.edges)), dense: none}
		for c := firstChild[n]; c != none; c = nextSibling[c] {
			t.edges = append(t.edges, trieEdge{label[c], c})
		}
		node.count = int32(len(t.edges)) - node.first
		if node.count >= denseFanout {
			var d [256]int32
			for i := range d {
				d[i] = none
			}
			for _, e := range t.edges[node.first:] {
				d[e.label] = e.next
			}
			node.dense = int32(len(t.dense))
			t.dense = append(t.dense, d)
		}
		t.nodes[n] = node
	}
	return t
}

// child returns node n's child labelled b, or -1.
func (t *trie) child(n int32, b byte) int32 {
	node := &t.nodes[n]
	if node.dense >= 0 {
		return t.dense[node.dense][b]
	}
	for _, e := range t.edges[node.first : node.first+node.count] {
		if e.label >= b {
			if e.label == b {
				return e.next
			}
			break
		}
	}
	return -1
}

// walk returns the node reached from n along s, or -1.
func (t *trie) walk(n int32, s string) int32 {
	for i := 0; i < len(s) && n >= 0; i++ {
		n = t.child(n, s[i])
	}
	return n
}

// longest returns the id and length of the longest entry that, appended to node n's path,
// is a prefix of s; length 0 when there is none.
func (t *trie) longest(n int32, s []byte) (id int32, length int) {
	id = -1
	for i := 0; i < len(s); i++ {
		if n = t.child(n, s[i]); n < 0 {
			break
		}
		if x := t.nodes[n].id; x >= 0 {
			id, length = x, i+1
		}
	}
	return id, length
}
