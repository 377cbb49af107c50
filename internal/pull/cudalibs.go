package pull

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// cudaProvider is the CUDA execution provider library of a GPU runtime.
const cudaProvider = "libonnxruntime_providers_cuda.so"

// defaultLibDirs are the directories the x86-64 glibc loader searches after
// LD_LIBRARY_PATH, RUNPATH and its cache (Debian/Ubuntu multiarch layout
// first, then the traditional ones).
var defaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// MissingCUDALibs reports, in order, the libraries that the CUDA provider in
// dir (a GPURuntimeDir) needs and that this process's dynamic loader would
// not find: the provider's DT_NEEDED entries (libcublasLt.so.13, ...,
// libcuda.so.1) and the libraries it opens at run time (cuDNN). An empty
// result means the provider's libraries can all be found; whether the
// driver suits the GPU is only known when the provider is loaded.
//
// Nothing is loaded: it searches as ld.so does, in LD_LIBRARY_PATH (the
// loader's setting of this process, not configuration), the provider's
// RUNPATH, the directories of /etc/ld.so.conf (which ldconfig caches) and the
// default directories, and takes a file only if it is an ELF object of the
// provider's class and machine. A CUDA installation outside those
// directories (say /usr/local/cuda/lib64, not configured) is missing, as it
// is for the loader.
func MissingCUDALibs(dir string) ([]string, error) {
	dirs, err := loaderDirs(os.Getenv("LD_LIBRARY_PATH"), "/etc/ld.so.conf")
	if err != nil {
		return nil, err
	}
	return missingLibs(filepath.Join(dir, cudaProvider), GPURuntime.Dlopened, dirs)
}

// missingLibs reports the DT_NEEDED entries of the object at path, then the
// extra names, that the loader would not find: it searches dirs.env, the
// object's RUNPATH ($ORIGIN expanded), then dirs.system.
func missingLibs(path string, extra []string, dirs searchDirs) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v (run `embedd runtime pull --gpu`)", ErrMissing, path, err)
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	runpath, err := f.DynString(elf.DT_RUNPATH)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var search []string
	search = append(search, dirs.env...)
	for _, rp := range runpath {
		for _, d := range filepath.SplitList(rp) {
			search = append(search, strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(path)))
		}
	}
	search = append(search, dirs.system...)
	var missing []string
	for _, name := range append(needed, extra...) {
		if !findLib(name, search, f.Class, f.Machine) {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// findLib reports whether name is in one of dirs as an ELF object of the
// given class and machine; the loader skips a file of another kind and goes
// on searching.
func findLib(name string, dirs []string, class elf.Class, machine elf.Machine) bool {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		f, err := elf.Open(filepath.Join(d, name))
		if err != nil {
			continue
		}
		ok := f.Class == class && f.Machine == machine
		f.Close()
		if ok {
			return true
		}
	}
	return false
}

// searchDirs is the loader's library search path without the object's
// RUNPATH, which goes between env and system.
type searchDirs struct {
	env    []string // LD_LIBRARY_PATH
	system []string // ld.so.conf directories, then the defaults
}

// loaderDirs builds the search path from LD_LIBRARY_PATH's value and the
// ld.so.conf at conf (a missing conf is no error).
func loaderDirs(ldLibraryPath, conf string) (searchDirs, error) {
	var s searchDirs
	for _, d := range strings.Split(ldLibraryPath, ":") {
		if d != "" {
			s.env = append(s.env, d)
		}
	}
	dirs, err := readLdSoConf(conf, 0)
	if err != nil {
		return s, err
	}
	s.system = append(dirs, defaultLibDirs...)
	return s, nil
}

// readLdSoConf returns the directories listed in an ld.so.conf file,
// following `include GLOB` lines (relative globs are relative to the file's
// directory). depth bounds include cycles.
func readLdSoConf(path string, depth int) ([]string, error) {
	if depth > 8 {
		return nil, nil
	}
	fh, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var dirs []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case fields[0] == "include" && len(fields) > 1:
			for _, pat := range fields[1:] {
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(filepath.Dir(path), pat)
				}
				matches, _ := filepath.Glob(pat) // the only error is a bad pattern, which ldconfig ignores too
				for _, m := range matches {
					more, err := readLdSoConf(m, depth+1)
					if err != nil {
						return nil, err
					}
					dirs = append(dirs, more...)
				}
			}
		case fields[0] == "hwcap":
		default:
			// "dir" or the old "dir=TYPE" form; a line may list several.
			for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == ':' }) {
				dirs = append(dirs, strings.SplitN(f, "=", 2)[0])
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return dirs, nil
}
