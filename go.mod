module github.com/embedd/embedd

go 1.26
