"""What nixld's Python hook does once a library is missing: where it looks, what it loads.

Imported by the hook (_nixld_python_hook, which the .pth file loads) on the first failure, or
when ctypes is imported, never at start-up. Standard library only, Python 3.8 and newer. The
contract's functions below read nix-ld's variables as nixld.config does, and read_elf reads
what nixld.objects reads: the tests check both against nixld's on the same inputs.
"""

import _thread
import os
import sys

# -- nix-ld's contract, as nixld.config reads it -----------------------------------------------

DEFAULT_LIBRARY_DIR = b"/run/current-system/sw/share/nix-ld/lib"
LOG_LEVELS = ("error", "warn", "info", "debug", "trace")
DEFAULT_LOG_LEVEL = "warn"

# (class, little endian, e_machine) of every Nix system, in nix-ld's spelling (nixld.elf's).
SYSTEM_ABIS = {
    "x86_64_linux": (64, True, 62),
    "i686_linux": (32, True, 3),
    "aarch64_linux": (64, True, 183),
    "armv7l_linux": (32, True, 40),
    "riscv64_linux": (64, True, 243),
    "powerpc64_linux": (64, False, 21),
    "powerpc64le_linux": (64, True, 21),
    "s390x_linux": (64, False, 22),
    "loongarch64_linux": (64, True, 258),
}
# How a message names a machine (nixld.elf's names).
MACHINE_NAMES = {3: "i386", 21: "ppc64", 22: "s390x", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64",
                 258: "loongarch64"}


def setting(env, name):
    """The value of `name`, with an empty value counted as unset (as nix-ld does)."""
    value = env.get(name)
    return value if value else None


def split_nix_ld_path(value):
    """A NIX_LD_LIBRARY_PATH value split on `:` or `,`, without empty entries (to glibc an
    empty entry is the current directory)."""
    return [entry for entry in value.replace(b",", b":").split(b":") if entry]


def system_variables(base, system):
    """nix-ld 2.x's spelling of `base`'s variable for `system` (`NIX_LD_x86_64_linux`), and
    nix-ld 1.x's (`NIX_LD_x86_64-linux`)."""
    cpu, _, kernel = system.rpartition("_")
    return base + b"_" + system.encode(), base + b"_" + (cpu + "-" + kernel).encode()


def system_variable(env, base, system):
    """The spelling that counts in `env`: 2.x's, unless `env` has no variable of that name (an
    empty one counts) and has 1.x's."""
    current, old = system_variables(base, system)
    return old if current not in env and old in env else current


def nix_ld_library_dirs(env, system):
    """The NIX_LD library directories and the variable they came from (or "default")."""
    names = (b"NIX_LD_LIBRARY_PATH",) if system is None else (
        system_variable(env, b"NIX_LD_LIBRARY_PATH", system), b"NIX_LD_LIBRARY_PATH")
    for name in names:
        value = setting(env, name)
        if value is not None:
            return tuple(split_nix_ld_path(value)), name.decode()
    return (DEFAULT_LIBRARY_DIR,), "default"


def log_level(env):
    """The index in LOG_LEVELS of NIX_LD_LOG (the default's when it names none)."""
    value = setting(env, b"NIX_LD_LOG")
    if value is not None:
        name = value.strip().lower()
        for index, level in enumerate(LOG_LEVELS):
            if name == level.encode():
                return index
    return LOG_LEVELS.index(DEFAULT_LOG_LEVEL)


def system_of(abi):
    """The Nix system of (class, little endian, e_machine), None for a machine Nix lacks."""
    for system, known in SYSTEM_ABIS.items():
        if known == abi:
            return system
    return None


# -- the facts the loader checks before it takes a file ------------------------------------------

ET_DYN = 3
DT_NULL, DT_STRTAB, DT_SONAME = 0, 5, 14
PT_LOAD, PT_DYNAMIC = 1, 2
# class: the ELF header's fields after e_ident up to e_phnum, a program header, a dynamic entry.
_LAYOUTS = {64: ("HHIQQQIHHH", "IIQQQQQQ", "qQ"), 32: ("HHIIIIIHHH", "IIIIIIII", "iI")}
# Bounds no real file reaches: more program headers than the kernel takes, a longer soname.
_MAX_HEADERS_BYTES = 65536
_MAX_DYNAMIC_BYTES = 65536
_MAX_NAME = 4096


def read_elf(path):
    """(abi, e_type, soname) of the file at `path`: abi is (class, little endian, e_machine),
    soname its DT_SONAME (None without one). Raises OSError when it cannot be read, ValueError
    when it is not ELF or is corrupt."""
    import struct  # start-up time: only once a library is missing

    # Without O_NONBLOCK, a FIFO would wait for a writer, for ever.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not _is_regular(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        head = os.pread(fd, 64, 0)
        if head[:4] != b"\x7fELF" or len(head) < 16:
            raise ValueError("not an ELF file")
        if head[4] not in (1, 2) or head[5] not in (1, 2):
            raise ValueError("corrupt ELF identification")
        elf_class, order = 32 * head[4], "<" if head[5] == 1 else ">"
        header, program_header, dynamic_entry = _LAYOUTS[elf_class]
        try:
            e_type, machine, _, _, phoff, _, _, _, phentsize, phnum = struct.unpack_from(order + header, head, 16)
            abi = (elf_class, order == "<", machine)
            phdr, dyn = struct.Struct(order + program_header), struct.Struct(order + dynamic_entry)
            if phentsize != phdr.size or phnum * phdr.size > _MAX_HEADERS_BYTES:
                return abi, e_type, None
            loads, dynamic = [], None
            for fields in phdr.iter_unpack(os.pread(fd, phnum * phdr.size, phoff)):
                kind, offset, vaddr, filesz = fields[0], *(fields[2:4] + fields[5:6] if elf_class == 64 else
                                                           fields[1:3] + fields[4:5])
                if kind == PT_LOAD:
                    loads.append((vaddr, offset, filesz))
                elif kind == PT_DYNAMIC and dynamic is None:
                    dynamic = (offset, filesz)
            return abi, e_type, _soname(fd, dyn, dynamic, loads)
        except (struct.error, OverflowError):  # a table cut short, an offset no file has
            raise ValueError("truncated or corrupt ELF file") from None
    finally:
        os.close(fd)


def _soname(fd, dyn, dynamic, loads):
    """DT_SONAME, read as the loader finds it: DT_STRTAB is an address, which a PT_LOAD maps
    to a place in the file."""
    if dynamic is None:
        return None
    offset, size = dynamic
    table = os.pread(fd, min(size, _MAX_DYNAMIC_BYTES) // dyn.size * dyn.size, offset)
    values = {}
    for tag, value in dyn.iter_unpack(table):
        if tag == DT_NULL:
            break
        values.setdefault(tag, value)  # the first one counts, as in glibc
    if DT_SONAME not in values or DT_STRTAB not in values:
        return None
    for vaddr, file_offset, filesz in loads:
        if vaddr <= values[DT_STRTAB] < vaddr + filesz:
            start = file_offset + values[DT_STRTAB] - vaddr + values[DT_SONAME]
            name = os.pread(fd, _MAX_NAME, start)
            end = name.find(b"\0")
            if end == -1:
                raise ValueError("corrupt dynamic section (the soname has no end)")
            return name[:end]
    raise ValueError("corrupt dynamic section (DT_STRTAB is in no loaded segment)")


def _is_regular(mode):
    return mode & 0o170000 == 0o100000


def abi_name(abi):
    """`x86_64 (64-bit)`, as nixld names a machine in a message."""
    name = MACHINE_NAMES.get(abi[2], "machine %d" % abi[2])
    if abi[2] == 62 and abi[0] == 32:
        name = "x32"
    elif abi[2] == 21 and abi[1]:
        name = "ppc64le"
    return "%s (%d-bit)" % (name, abi[0])


def missing_name(message):
    """The library the loader did not find, from its message (`libz.so.1: cannot open shared
    object file: No such file or directory`); None for any other failure (an undefined
    symbol, a version, a file of another class), whose first field is a path."""
    name, separator, _ = message.partition(": ")
    if separator and name and "/" not in name and ".so" in name and "\n" not in name:
        return name
    return None


def where_looked(dirs, source, system):
    """Where the hook looked, in the words of a note: the directories and their variable."""
    if source == "default":
        unset = ("NIX_LD_LIBRARY_PATH_%s and NIX_LD_LIBRARY_PATH are" % system if system
                 else "NIX_LD_LIBRARY_PATH is")
        return "nix-ld's default directory %s (%s unset)" % (os.fsdecode(DEFAULT_LIBRARY_DIR), unset)
    if dirs:
        return "%s (from %s)" % (", ".join(os.fsdecode(directory) for directory in dirs), source)
    return "no directory (%s names none)" % source


# -- what happens when a library is missing ----------------------------------------------------

class _Rescue:
    """One failing load and what the hook does about it: the names it looked for, what it
    loaded (unloaded again if the load fails all the same), and what the note will say."""

    def __init__(self, what):
        self.what = what
        self.env = None
        self.tried = {}  # each name looked for: where it was loaded from (None: nowhere)
        self.opened = []  # (path, handle), in the order they were loaded
        self.failure = None  # the note: why nothing more can be done

    def provide(self, message, need_soname=True):
        """Find and load the library `message` (the loader's) says was not found, and what it
        needs in turn; its path (str), or None when it cannot be provided."""
        name = missing_name(message)
        if name is None:
            return None
        if name in self.tried:
            if self.tried[name] is not None:  # loaded, and still not found: nothing more to do
                self.failure = ("nixld python-hook: loaded %s, but the loader still does not find %s"
                                % (self.tried[name], name))
            return None
        me = _thread.get_ident()
        with _lock:
            _busy.add(me)
            try:
                if self.env is None:
                    self.env = os.environb
                    self.abi = _process_abi()
                    self.system = system_of(self.abi)
                    self.dirs, self.source = nix_ld_library_dirs(self.env, self.system)
                    self.verbose = log_level(self.env) >= LOG_LEVELS.index("info")
                return self._provide(name, need_soname, None)
            except Exception as error:  # a bug of the hook's must not hide the loader's error
                self.failure = "nixld python-hook failed: %s: %s" % (type(error).__name__, error)
                return None
            finally:
                _busy.discard(me)

    def _provide(self, name, need_soname, needed_by):
        """Load `name` from the first NIX_LD directory that holds a file the loader would take
        for it, as the loader searches a path; its path, or None."""
        self.tried[name] = None
        passed_over = []
        for directory in self.dirs:
            candidate = os.path.join(os.path.abspath(os.fsdecode(directory)), name)
            why = self._unfit(candidate, name, need_soname)
            if why is None:
                self.tried[name] = self._load(candidate, name)
                return self.tried[name]
            if why:
                passed_over.append(why)
        who = "" if needed_by is None else ", which %s needs," % needed_by
        skipped = "; skipped %s" % "; ".join(passed_over) if passed_over else ""
        self.failure = "nixld python-hook: %s%s is not in the NIX_LD library directories either: looked in %s%s" % (
            name, who, where_looked(self.dirs, self.source, self.system), skipped)
        return None

    def _unfit(self, path, name, need_soname):
        """None when the loader would take `path` for `name`; else why not ("" when there is no
        such file, which needs no word)."""
        try:
            abi, e_type, soname = read_elf(path)
        except FileNotFoundError:
            return ""
        except (OSError, ValueError) as error:
            return "%s: %s" % (path, getattr(error, "strerror", None) or error)
        if abi != self.abi:
            return "%s is %s, not %s" % (path, abi_name(abi), abi_name(self.abi))
        if e_type != ET_DYN:
            return "%s is not a shared library" % path
        if need_soname and soname != os.fsencode(name):
            # Loaded by its path, a library answers to its own soname only.
            return "%s: %s" % (path, "its soname is %s" % os.fsdecode(soname) if soname else "it has no soname")
        return None

    def _load(self, path, name):
        """dlopen `path`, after what it needs that the loader does not find, in turn."""
        import _ctypes  # start-up time: only once a library is missing

        while True:
            try:
                # RTLD_LOCAL: the library serves the objects that name it, as if the loader had
                # found it; RTLD_GLOBAL would put its symbols before those of every library
                # loaded later, the copies wheels bundle under other names included.
                handle = _ctypes.dlopen(path, os.RTLD_NOW | os.RTLD_LOCAL)
                break
            except OSError as error:
                message = str(error)
            needed = missing_name(message)
            if needed is None or needed in self.tried:
                self.failure = "nixld python-hook: found %s for %s, but it cannot be loaded: %s" % (
                    path, name, message)
                return None
            if self._provide(needed, True, path) is None:
                return None
        self.opened.append((path, handle))
        if self.verbose:
            _say("info: loaded %s for %s (the loader did not find %s)" % (path, self.what, name))
        return path

    def give_up(self, error):
        """The load failed all the same: unload what was loaded for it, and put the note on
        the loader's `error`."""
        if self.opened:
            import _ctypes

            for _, handle in reversed(self.opened):
                try:
                    _ctypes.dlclose(handle)
                except OSError:
                    pass
            self.opened = []
        if self.failure:
            _add_note(error, self.failure)

    def keep(self):
        """The load worked: what was loaded for it stays loaded, for good."""
        _kept.extend(self.opened)


_kept = []  # (path, handle) of every library the hook loaded and kept
_lock = _thread.RLock()
_busy = set()  # the threads in a rescue: a failure in the rescue's own imports gets none
_originals = {}  # ctypes' own functions, by the name of the hook's that stands in for each


def rescue_for(error, what):
    """A rescue for the loader's `error` (while loading `what`) when it says a library was not
    found and no rescue is under way in this thread (the hook's own imports); else None."""
    if _thread.get_ident() in _busy or missing_name(str(error)) is None:
        return None
    return _Rescue(what)


def dlopen(name, mode=os.RTLD_NOW | os.RTLD_LOCAL):
    """ctypes' dlopen, with the libraries the loader does not find provided; a library named
    without a slash that the loader does not find is found in the NIX_LD directories too."""
    rescue = None
    target = name
    while True:
        try:
            handle = _originals["dlopen"](target, mode)
        except OSError as error:
            failure = error
        else:
            if rescue is not None:
                rescue.keep()
            return handle
        if rescue is None:
            rescue = rescue_for(failure, "ctypes.CDLL(%r)" % (name,))
        if rescue is None:
            break
        text = str(failure)
        itself = isinstance(name, (str, bytes)) and "/" not in os.fsdecode(name) and \
            missing_name(text) == os.fsdecode(name)
        found = rescue.provide(text, need_soname=not itself)
        if found is None:
            break
        if itself:  # the loader did not find it by its name: by its path, then
            target = found
    if rescue is not None:
        rescue.give_up(failure)
    raise failure


def find_library(name):
    """ctypes.util.find_library, which, when it finds nothing, looks in the NIX_LD directories
    too (for `lib{name}.so` and `lib{name}.so.*`) and returns the full path."""
    found = _originals["find_library"](name)
    if found is not None or _thread.get_ident() in _busy:
        return found
    try:
        return find_in_nix_ld_dirs(name, os.environb, _process_abi())
    except Exception:  # a bug of the hook's must not break find_library
        return None


def find_in_nix_ld_dirs(name, env, abi):
    """The library `lib{name}.so*` of the machine `abi` in the first NIX_LD directory that
    holds one, as a path: named by its soname when a file of that name is beside it, as
    ldconfig's links are; None when there is none."""
    dirs, _ = nix_ld_library_dirs(env, system_of(abi))
    prefix = "lib%s.so" % name
    for directory in dirs:
        directory = os.path.abspath(os.fsdecode(directory))
        try:
            names = sorted(entry for entry in os.listdir(directory)
                           if entry == prefix or entry.startswith(prefix + "."))
        except OSError:
            continue
        for entry in names:
            path = os.path.join(directory, entry)
            if _takes(path, abi):
                soname = read_elf(path)[2]
                if soname and soname != os.fsencode(entry):
                    named = os.path.join(directory, os.fsdecode(soname))
                    if _takes(named, abi):
                        return named
                return path
    return None


def patch_ctypes(module):
    """Put the hook's dlopen in ctypes, or its find_library in ctypes.util, once they have run."""
    attribute = {"ctypes": "_dlopen", "ctypes.util": "find_library"}.get(getattr(module, "__name__", None))
    original = getattr(module, attribute, None) if attribute else None
    if original is None or original is dlopen or original is find_library:
        return
    _originals[attribute.lstrip("_")] = original
    setattr(module, attribute, dlopen if attribute == "_dlopen" else find_library)


def _takes(path, abi):
    """Whether the loader of a process of `abi` would take the file at `path`."""
    try:
        found, e_type, _ = read_elf(path)
    except (OSError, ValueError):
        return False
    return found == abi and e_type == ET_DYN


def _say(line):
    try:
        sys.stderr.write("nixld python-hook: %s\n" % line)
        sys.stderr.flush()
    except Exception:  # a closed stderr loses the line, nothing more
        pass


def _add_note(error, note):
    if hasattr(error, "add_note"):  # Python 3.11 and newer show it under the error
        error.add_note(note)
    else:  # before 3.11, where pytest and the exceptiongroup backport look for it
        try:
            error.__notes__ = list(getattr(error, "__notes__", ())) + [note]
        except Exception:
            pass


_abi = []


def _process_abi():
    """(class, little endian, e_machine) of this Python: the only files its loader takes."""
    if not _abi:
        _abi.append(read_elf("/proc/self/exe")[0])
    return _abi[0]
