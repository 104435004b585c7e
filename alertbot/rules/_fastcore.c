/* alertbot.rules._fastcore: alertbot/rules/core.py's Core, in C.
 *
 * The engine's per-symbol numbers (last two ticks, running price extremes, the gaps of the
 * threshold indexes, the safe bands of the moves windows) and the per-tick filter that tells a
 * quiet tick from a busy one. Core.scan() reads a decoded !miniTicker@arr frame element by
 * element without creating a Python object and stops only where the engine's Python code is
 * needed. core.py is the specification: every method here does exactly what its namesake there
 * does, with the same floating-point expressions in the same order, so results are identical.
 *
 * scan() reads only elements it can read exactly as alertbot.ticker.read_element would
 * (exact dict, no "st", plain ASCII decimals, an upper-case ASCII symbol, an event time that
 * fits in 64 bits); anything else is handed back to Python, which reads it as before.
 * Times are int64: a time beyond that range is clamped (no feed sends one).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define KINDS 7
#define DUPLICATE 0
#define QUIET 1
#define BUSY 2
#define TEXT_MAX 32 /* price texts up to this long are kept as bytes */

typedef struct {
    int64_t ms;
    Py_ssize_t imin, imax;
    double low, high;
    int64_t expires;
    double lo, hi;
    int rise, drop;
    double rglo, rghi, dglo, dghi;
    int hits; /* of the last tick: 1 the rise, 2 the drop left its gap */
} Win;

typedef struct {
    int64_t time, ptime;
    double c, o, h, l, v, q;
    double pc, po, ph, pl, pv, pq;
    /* the price texts of the last two ticks: a str (owned), or NULL when the text is the bytes
       in tbuf / ptbuf (raw frames), made a str only when Python asks for it (values()) */
    PyObject *text, *ptext;
    char tbuf[TEXT_MAX], ptbuf[TEXT_MAX];
    Py_ssize_t tlen, ptlen;
    int64_t *min_t, *max_t;
    double *min_p, *max_p;
    Py_ssize_t min_n, max_n, min_cap, max_cap;
    unsigned watch;
    double glo[KINDS], ghi[KINDS];
    /* per basic kind: its index's thresholds, sorted (set_keys), the value walk() last saw
       (NaN: none or not computable) and bisect_left(keys, value) when known, else -1 */
    double *keys[KINDS];
    Py_ssize_t nkeys[KINDS], kpos[KINDS];
    double kval[KINDS];
    Win *wins;
    Py_ssize_t nw;
    int pending, breaks, broke;
    int64_t due;
    unsigned kinds;
    int anyhits; /* some window's hits are set */
} Slot;

/* One element of a raw frame, read by parse_raw(): its byte span and, when ok, its values. */
typedef struct {
    Py_ssize_t start, end;
    int ok; /* a well-formed USD-M ticker in the plain form scan_raw reads; else Python's */
    int64_t time;
    double c, o, h, l, v, q;
    Py_ssize_t sym, nsym, text, ntext; /* offsets into the frame */
    uint64_t hash;                      /* of the symbol's bytes (sym_hash) */
} Rec;

/* Elements read from raw frames, in a growing array. */
typedef struct {
    Rec *at;
    Py_ssize_t n, cap;
} Recs;

/* Symbols by their ASCII bytes (the C side of Core.symbols, for raw frames): open addressing. */
typedef struct {
    uint64_t hash;
    Py_ssize_t slot; /* -1: empty */
    Py_ssize_t len;
    char *bytes;
} SymEntry;

typedef struct {
    PyObject_HEAD
    int64_t horizon;
    Slot *slots;
    Py_ssize_t n, cap;
    PyObject *symbols; /* dict: str -> int */
    Py_ssize_t good;
    Py_ssize_t slot;
    long flags;
    SymEntry *table;
    Py_ssize_t table_n, table_cap; /* table_cap: a power of two, or 0 */
    PyObject *raw; /* the frame of the last parse_raw (owned), or NULL */
    Recs recs; /* the elements of the last parse_raw frame */
    int market_st; /* the st of the market read (ParseStats.market_st): others are refused */
} Core;

static PyObject *s_e, *s_E, *s_s, *s_c, *s_o, *s_h, *s_l, *s_v, *s_q, *s_st, *s_event;

/* ------------------------------------------------------------------ helpers */

/* part in percent of whole, rounded to 9 decimal places with exactly the operations of
   ticker.py's percent(): binary floating point misses exact decimal moves (0.1 -> 0.105 is
   4.99999999999999 %). Adding and taking away 1.5 * 2**52 rounds to an integer, ties to even,
   never -0.0 (setup.py builds with -ffp-contract=off: a fused multiply-add would round once
   fewer than Python does). */
static inline double pct(double part, double whole)
{
    if (!whole)
        return NAN;
    double v = part / whole * 100;
    if (v > -1e6 && v < 1e6)
        return (v * 1e9 + 6755399441055744.0 - 6755399441055744.0) / 1e9;
    return v;
}

/* how far (in percent) a safe band keeps inside its gaps: more than pct() moves a value */
#define SNAP 1e-9

static inline double metric(int k, double c, double o, double h, double lo, double v, double q)
{
    switch (k) {
    case 0: return c;
    case 1: return pct(c - o, o);
    case 2: return pct(h - lo, lo);
    case 3: return v;
    case 4: return q;
    case 5: return h;
    default: return lo;
    }
}

static inline double pmax(double a, double b) { return b > a ? b : a; }
static inline double pmin(double a, double b) { return b < a ? b : a; }

static int64_t as_time(PyObject *x, int *err)
{
    int overflow = 0;
    long long t = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (t == -1 && PyErr_Occurred()) {
        *err = 1;
        return 0;
    }
    if (overflow > 0)
        return INT64_MAX;
    if (overflow < 0)
        return INT64_MIN;
    return (int64_t)t;
}

static Slot *get_slot(Core *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->n) {
        PyErr_SetString(PyExc_IndexError, "no such slot");
        return NULL;
    }
    return &self->slots[i];
}

/* The slot a Python int argument names (NULL with an exception set). */
static Slot *slot_arg(Core *self, PyObject *arg)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    return get_slot(self, i);
}

static Win *get_win(Core *self, Py_ssize_t i, Py_ssize_t w)
{
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    if (w < 0 || w >= s->nw) {
        PyErr_SetString(PyExc_IndexError, "no such window");
        return NULL;
    }
    return &s->wins[w];
}

static int grow(void **p, Py_ssize_t *cap, Py_ssize_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    Py_ssize_t cap2 = *cap ? *cap * 2 : 16;
    while (cap2 < need)
        cap2 *= 2;
    void *q = PyMem_Realloc(*p, (size_t)cap2 * size);
    if (q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *p = q;
    *cap = cap2;
    return 0;
}

/* ------------------------------------------------------------------ per tick */

static Py_ssize_t bisect_t(const int64_t *t, Py_ssize_t n, int64_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (t[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int push(Core *self, Slot *s, int64_t time, double price)
{
    while (s->min_n && s->min_p[s->min_n - 1] >= price)
        s->min_n--;
    if (s->min_n + 1 > s->min_cap) {
        Py_ssize_t cap_t = s->min_cap, cap_p = s->min_cap;
        if (grow((void **)&s->min_t, &cap_t, s->min_n + 1, sizeof(int64_t)) < 0 ||
            grow((void **)&s->min_p, &cap_p, s->min_n + 1, sizeof(double)) < 0)
            return -1;
        s->min_cap = cap_t;
    }
    s->min_t[s->min_n] = time;
    s->min_p[s->min_n] = price;
    s->min_n++;
    while (s->max_n && s->max_p[s->max_n - 1] <= price)
        s->max_n--;
    if (s->max_n + 1 > s->max_cap) {
        Py_ssize_t cap_t = s->max_cap, cap_p = s->max_cap;
        if (grow((void **)&s->max_t, &cap_t, s->max_n + 1, sizeof(int64_t)) < 0 ||
            grow((void **)&s->max_p, &cap_p, s->max_n + 1, sizeof(double)) < 0)
            return -1;
        s->max_cap = cap_t;
    }
    s->max_t[s->max_n] = time;
    s->max_p[s->max_n] = price;
    s->max_n++;
    /* forget what is older than the horizon, in batches */
    int64_t edge = time - self->horizon;
    if (s->min_n > 64 && s->min_t[0] < edge) {
        Py_ssize_t cut = bisect_t(s->min_t, s->min_n, edge);
        memmove(s->min_t, s->min_t + cut, (size_t)(s->min_n - cut) * sizeof(int64_t));
        memmove(s->min_p, s->min_p + cut, (size_t)(s->min_n - cut) * sizeof(double));
        s->min_n -= cut;
        for (Py_ssize_t w = 0; w < s->nw; w++)
            s->wins[w].imin = s->wins[w].imin - cut > 0 ? s->wins[w].imin - cut : 0;
    }
    if (s->max_n > 64 && s->max_t[0] < edge) {
        Py_ssize_t cut = bisect_t(s->max_t, s->max_n, edge);
        memmove(s->max_t, s->max_t + cut, (size_t)(s->max_n - cut) * sizeof(int64_t));
        memmove(s->max_p, s->max_p + cut, (size_t)(s->max_n - cut) * sizeof(double));
        s->max_n -= cut;
        for (Py_ssize_t w = 0; w < s->nw; w++)
            s->wins[w].imax = s->wins[w].imax - cut > 0 ? s->wins[w].imax - cut : 0;
    }
    return 0;
}

static void band(Win *win, double price)
{
    (void)price;
    double low = win->low, high = win->high;
    double lo = low, hi = high;
    if (win->rise) {
        double glo = win->rglo + SNAP, ghi = win->rghi - SNAP;
        if (glo < ghi) {
            lo = pmax(lo, low * (1 + glo / 100));
            hi = pmin(hi, low * (1 + ghi / 100));
        }
        else
            hi = -INFINITY;
    }
    if (win->drop) {
        double glo = win->dglo + SNAP, ghi = win->dghi - SNAP;
        if (glo < ghi) {
            lo = pmax(lo, high * (1 - ghi / 100));
            hi = pmin(hi, high * (1 - glo / 100));
        }
        else
            hi = -INFINITY;
    }
    win->lo = lo + fabs(lo) * 1e-9;
    win->hi = hi - fabs(hi) * 1e-9;
}

static int refresh(Slot *s, Win *win, int64_t time, double price)
{
    int64_t start = time - win->ms;
    Py_ssize_t i = win->imin < s->min_n - 1 ? win->imin : s->min_n - 1;
    while (s->min_t[i] < start)
        i++;
    win->imin = i;
    Py_ssize_t j = win->imax < s->max_n - 1 ? win->imax : s->max_n - 1;
    while (s->max_t[j] < start)
        j++;
    win->imax = j;
    double low = win->low = s->min_p[i];
    double high = win->high = s->max_p[j];
    /* saturated: event times near INT64_MAX are accepted, and a wrapped expiry would refresh
       the window on every tick (core.py's Python int never wraps) */
    int64_t oldest = s->min_t[i] < s->max_t[j] ? s->min_t[i] : s->max_t[j];
    win->expires = oldest > INT64_MAX - win->ms ? INT64_MAX : oldest + win->ms;
    int hits = 0;
    if (win->rise) {
        double v = pct(price - low, low);
        if (!(win->rglo < v && v < win->rghi))
            hits |= 1;
    }
    if (win->drop) {
        double v = pct(high - price, high);
        if (!(win->dglo < v && v < win->dghi))
            hits |= 2;
    }
    if (!hits)
        band(win, price);
    return hits;
}

/* -1 on error */
/* text: the price text as a str, or NULL for the tn (<= TEXT_MAX) bytes at tp */
static int feed(Core *self, Slot *s, int64_t time, double c, double o, double h, double lo,
                double v, double q, PyObject *text, const char *tp, Py_ssize_t tn)
{
    if (time <= s->time)
        return DUPLICATE;
    s->ptime = s->time;
    s->pc = s->c;
    s->po = s->o;
    s->ph = s->h;
    s->pl = s->l;
    s->pv = s->v;
    s->pq = s->q;
    Py_XSETREF(s->ptext, s->text); /* the reference moves */
    memcpy(s->ptbuf, s->tbuf, TEXT_MAX);
    s->ptlen = s->tlen;
    if (text != NULL) {
        Py_INCREF(text);
        s->text = text;
    }
    else {
        s->text = NULL;
        memcpy(s->tbuf, tp, (size_t)tn);
        s->tlen = tn;
    }
    s->time = time;
    s->c = c;
    s->o = o;
    s->h = h;
    s->l = lo;
    s->v = v;
    s->q = q;
    if (push(self, s, time, c) < 0)
        return -1;
    unsigned kinds = 0;
    unsigned watch = s->watch;
    if (watch) {
        for (int k = 0; k < KINDS; k++) {
            if (watch >> k & 1) {
                double x = metric(k, c, o, h, lo, v, q);
                if (!(s->glo[k] < x && x < s->ghi[k]))
                    kinds |= 1u << k;
            }
        }
    }
    int wins = 0;
    for (Py_ssize_t w = 0; w < s->nw; w++) {
        Win *win = &s->wins[w];
        win->hits = 0;
        if (!(time <= win->expires && win->lo < c && c < win->hi))
            wins |= win->hits = refresh(s, win, time, c);
    }
    long flags = 0;
    if (s->breaks) {
        int broke = s->ptime >= 0 && (h > s->ph || lo < s->pl);
        if (broke || s->broke)
            flags |= 1;
        s->broke = broke;
    }
    if (s->due >= 0 && s->due <= time)
        flags |= 2;
    s->kinds = kinds;
    s->anyhits = wins;
    self->flags = flags;
    return (s->pending || kinds || wins || flags) ? BUSY : QUIET;
}

/* ------------------------------------------------------------------ reading elements */

/* Powers of ten exactly representable as doubles. */
static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Exact powers of ten as integers, for the fractional digits read eight at a time. */
static const uint64_t IPOW10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                   100000000};

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SWAR 1
/* Eight bytes as one word, the first in the lowest byte. */
static inline uint64_t load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Bit 7 set in each byte that is not an ASCII digit. Exact up to and including the first
 * such byte (a carry out of it may mark later bytes): only the first one is ever used. */
static inline uint64_t nondigits(uint64_t v)
{
    uint64_t x = v ^ 0x3030303030303030ULL;
    return ((x + 0x7676767676767676ULL) | x) & 0x8080808080808080ULL;
}

/* The value of eight ASCII digits, the first most significant, in three multiplications. */
static inline uint64_t digits8(uint64_t v)
{
    v -= 0x3030303030303030ULL;
    v = v * 10 + (v >> 8);
    v = (((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
         (((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >>
        32;
    return v & 0xFFFFFFFFULL;
}

/* The value of the k (0..7) ASCII digits in the low bytes of v, the first most significant:
 * they are moved up behind '0's and read as eight. */
static inline uint64_t digits_value(uint64_t v, int k)
{
    if (k == 0)
        return 0;
    return digits8((v << (8 * (8 - k))) | (0x3030303030303030ULL >> (8 * k)));
}
#endif

/* The digits of a plain decimal (digits with at most one '.', at least one digit) starting at p
 * and ending at the first '"' before p + n: *len its length and *out its value, exactly as
 * float() reads it. 0 when the text is anything else (the caller takes the general path).
 *
 * A mantissa below 2^53 over a power of ten up to 1e22 is converted by one division: both are
 * exact doubles and IEEE division rounds correctly, so the result is the correctly rounded
 * value float() gives (Clinger's fast path). Longer texts go through PyOS_string_to_double.
 * The common case, at most 15 digits before the point and 7 after with 32 bytes readable (the
 * volumes of large symbols have 10 to 12 before it), finds the ends of the digits with word
 * operations instead of a branch per character. */
static int plain_decimal_general(const char *p, Py_ssize_t n, Py_ssize_t *len, double *out);

static inline int plain_decimal(const char *p, Py_ssize_t n, Py_ssize_t *len, double *out)
{
#ifdef SWAR
    if (n >= 32) {
        /* up to 15 digits before the point (one or two words), up to 7 after (one word) */
        uint64_t a = load8(p), na = nondigits(a), ip;
        int ki;
        if (na) {
            ki = __builtin_ctzll(na) >> 3;
            ip = digits_value(a, ki);
        }
        else {
            uint64_t b = load8(p + 8), nb = nondigits(b);
            if (!nb)
                goto general;
            int k = __builtin_ctzll(nb) >> 3;
            ki = 8 + k;
            ip = digits8(a) * IPOW10[k] + digits_value(b, k);
        }
        if (p[ki] == '"') {
            if (ki == 0)
                return 0;
            *len = ki;
            *out = (double)ip; /* below 1e15: exact */
            return 1;
        }
        if (p[ki] == '.') {
            uint64_t f = load8(p + ki + 1), nf = nondigits(f);
            if (nf) {
                int kf = __builtin_ctzll(nf) >> 3;
                if (p[ki + 1 + kf] == '"' && ki + kf > 0 && ki + kf <= 19) {
                    uint64_t m = ip * IPOW10[kf] + digits_value(f, kf);
                    if (m <= (1ULL << 53)) { /* as the general path's condition below */
                        *len = ki + 1 + kf;
                        *out = (double)m / POW10[kf];
                        return 1;
                    }
                }
            }
        }
    }
general:
#endif
    return plain_decimal_general(p, n, len, out);
}

/* plain_decimal() for the texts its word-at-a-time path does not take. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int plain_decimal_general(const char *p, Py_ssize_t n, Py_ssize_t *len, double *out)
{
    uint64_t m = 0;
    int digits = 0, frac = -1;
    Py_ssize_t j = 0;
    for (; j < n; j++) {
        unsigned d = (unsigned char)p[j] - '0';
        if (d < 10) {
            m = m * 10 + d;
            digits++;
            if (frac >= 0)
                frac++;
        }
        else if (p[j] == '.' && frac < 0)
            frac = 0;
        else
            break;
    }
    if (j == n || p[j] != '"' || digits == 0 || j > 64)
        return 0;
    *len = j;
    if (frac < 0)
        frac = 0;
    if (digits <= 19 && m <= (1ULL << 53) && frac <= 22) {
        *out = (double)m / POW10[frac];
        return 1;
    }
    char buf[65];
    memcpy(buf, p, (size_t)j);
    buf[j] = '\0';
    char *end = NULL;
    double d = PyOS_string_to_double(buf, &end, NULL);
    if ((d == -1.0 && PyErr_Occurred()) || end != buf + j || !(d < INFINITY)) {
        PyErr_Clear();
        return 0;
    }
    *out = d;
    return 1;
}

/* A decimal as float() reads it, for the plain ASCII forms Binance sends; 0 when the caller
 * must leave the element to Python (also for values read_element rejects). */
static int read_text(const char *p, Py_ssize_t n, double *out)
{
    char buf[65];
    if (n <= 0 || n > 64)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= '0' && ch <= '9') || ch == '.' || ch == 'e' || ch == 'E' || ch == '+' ||
              ch == '-'))
            return 0;
    }
    Py_ssize_t len;
    char quoted[66];
    memcpy(quoted, p, (size_t)n);
    quoted[n] = '"';
    if (plain_decimal(quoted, n + 1, &len, out))
        return 1;
    memcpy(buf, p, (size_t)n);
    buf[n] = '\0';
    char *end = NULL;
    double d = PyOS_string_to_double(buf, &end, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (end != buf + n)
        return 0;
    if (!(0.0 <= d && d < INFINITY))
        return 0;
    *out = d;
    return 1;
}

static int read_number(PyObject *x, double *out)
{
    if (!PyUnicode_CheckExact(x) || !PyUnicode_IS_ASCII(x))
        return 0;
    return read_text((const char *)PyUnicode_DATA(x), PyUnicode_GET_LENGTH(x), out);
}

static int plain_symbol(PyObject *s)
{
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const char *p = (const char *)PyUnicode_DATA(s);
    if (n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] >= 'a' && p[i] <= 'z')
            return 0; /* upper() would change it */
    return 1;
}


/* ------------------------------------------------------------------ raw frames
 *
 * parse_raw() reads a whole frame's bytes in one pass, without creating a Python object, and
 * only when the frame is in the plain form Binance writes: a JSON array of flat objects, one
 * such object, or the combined-stream wrapper {"stream": "...", "data": ...} around either;
 * strings without escapes of printable ASCII and well-formed UTF-8; numbers that are integers
 * of at most 18 digits; true, false, null. Such a frame is valid JSON, and orjson would decode
 * it to exactly what is read here. Anything else (escapes, control characters, invalid UTF-8,
 * nested values, fractions, exponents, long numbers, a reply, invalid JSON) returns -1: the caller decodes the frame with orjson and
 * takes the dict path, which also raises for invalid JSON. Nothing is fed until the whole frame
 * was read, so a frame left to orjson has changed nothing.
 *
 * Of the elements read, those that are well-formed USD-M tickers (as read_element would accept
 * them) carry their values; scan_raw() feeds them, and stops at an element the caller must read
 * itself (by decoding its span with orjson): one that is not ok, or of a symbol with no slot.
 */

static uint64_t sym_hash(const char *p, Py_ssize_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a; binance_element() computes it inline */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static Py_ssize_t sym_find(Core *self, const char *p, Py_ssize_t n, uint64_t h)
{
    if (self->table_cap == 0)
        return -1;
    size_t mask = (size_t)self->table_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        SymEntry *e = &self->table[i];
        if (e->slot < 0)
            return -1;
        if (e->hash == h && e->len == n && memcmp(e->bytes, p, (size_t)n) == 0)
            return e->slot;
    }
}

static void sym_put(SymEntry *table, Py_ssize_t cap, SymEntry e)
{
    size_t mask = (size_t)cap - 1;
    size_t i = (size_t)e.hash & mask;
    while (table[i].slot >= 0)
        i = (i + 1) & mask;
    table[i] = e;
}

/* Mirror Core.symbols[symbol] = slot, by the symbol's UTF-8 bytes. A symbol beyond ASCII is
 * mirrored only when upper() leaves it as it is, so that a frame's bytes that match it are read
 * as Python reads them (ticker.py upper-cases a symbol that is not upper case). */
static int sym_add(Core *self, PyObject *symbol, Py_ssize_t slot)
{
    if (!PyUnicode_Check(symbol))
        return 0;
    Py_ssize_t n;
    const char *p;
    if (PyUnicode_IS_ASCII(symbol)) {
        n = PyUnicode_GET_LENGTH(symbol);
        p = (const char *)PyUnicode_DATA(symbol);
    }
    else {
        PyObject *upper = PyObject_CallMethod(symbol, "upper", NULL);
        if (upper == NULL)
            return -1;
        int same = PyUnicode_Compare(upper, symbol);
        Py_DECREF(upper);
        if (same == -1 && PyErr_Occurred())
            return -1;
        if (same != 0)
            return 0;
        p = PyUnicode_AsUTF8AndSize(symbol, &n);
        if (p == NULL) {
            PyErr_Clear(); /* a lone surrogate: no frame can carry it */
            return 0;
        }
    }
    uint64_t h = sym_hash(p, n);
    if (self->table_cap) {
        size_t mask = (size_t)self->table_cap - 1;
        for (size_t i = (size_t)h & mask; self->table[i].slot >= 0; i = (i + 1) & mask) {
            SymEntry *e = &self->table[i];
            if (e->hash == h && e->len == n && memcmp(e->bytes, p, (size_t)n) == 0) {
                e->slot = slot;
                return 0;
            }
        }
    }
    if ((self->table_n + 1) * 2 > self->table_cap) {
        Py_ssize_t cap = self->table_cap ? self->table_cap * 2 : 64;
        SymEntry *table = PyMem_Malloc((size_t)cap * sizeof(SymEntry));
        if (table == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < cap; i++)
            table[i].slot = -1;
        for (Py_ssize_t i = 0; i < self->table_cap; i++)
            if (self->table[i].slot >= 0)
                sym_put(table, cap, self->table[i]);
        PyMem_Free(self->table);
        self->table = table;
        self->table_cap = cap;
    }
    char *bytes = PyMem_Malloc((size_t)n + 1);
    if (bytes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(bytes, p, (size_t)n);
    SymEntry e = {h, slot, n, bytes};
    sym_put(self->table, self->table_cap, e);
    self->table_n++;
    return 0;
}

typedef struct {
    const char *p;
    Py_ssize_t n, i;
    int market_st; /* an element carrying another st is not ok (Python counts it) */
} Cur;

#define BAD (-1)     /* not in the plain form: the whole frame goes to orjson */
#define NOMEM (-2)   /* an exception is set */

static inline void skip_ws(Cur *c)
{
    while (c->i < c->n) {
        char ch = c->p[c->i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
            c->i++;
        else
            break;
    }
}

static inline int at(Cur *c, char ch) { return c->i < c->n && c->p[c->i] == ch; }

/* The length of the well-formed UTF-8 sequence of a character beyond ASCII at p (n bytes
 * left), 0 when it is not one: overlong forms, surrogates and code points beyond U+10FFFF are
 * refused, as orjson refuses them. */
static Py_ssize_t utf8_char(const unsigned char *p, Py_ssize_t n)
{
    unsigned char b = p[0];
    Py_ssize_t k;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (b >= 0xC2 && b <= 0xDF)
        k = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        k = 3;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    }
    else if (b >= 0xF0 && b <= 0xF4) {
        k = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    }
    else
        return 0;
    if (n < k || p[1] < lo || p[1] > hi)
        return 0;
    for (Py_ssize_t j = 2; j < k; j++)
        if (p[j] < 0x80 || p[j] > 0xBF)
            return 0;
    return k;
}

/* A string without escapes of printable ASCII and well-formed UTF-8 beyond it (Binance lists
 * symbols such as 币安人生USDT): the span of its content. */
static int plain_string(Cur *c, Py_ssize_t *start, Py_ssize_t *len)
{
    if (!at(c, '"'))
        return 0;
    const unsigned char *p = (const unsigned char *)c->p;
    for (Py_ssize_t j = c->i + 1; j < c->n; j++) {
        unsigned char ch = p[j];
        if (ch == '"') {
            *start = c->i + 1;
            *len = j - c->i - 1;
            c->i = j + 1;
            return 1;
        }
        if (ch >= 0x80) {
            Py_ssize_t k = utf8_char(p + j, c->n - j);
            if (k == 0)
                return 0;
            j += k - 1;
        }
        else if (ch < 0x20 || ch == 0x7f || ch == '\\')
            return 0;
    }
    return 0;
}

enum { V_STR, V_INT, V_NEGINT, V_NULL, V_LIT };

/* A scalar in the plain form: its kind, span and (integers) value; BAD otherwise. */
static int scalar(Cur *c, Py_ssize_t *start, Py_ssize_t *len, int64_t *num)
{
    if (c->i >= c->n)
        return BAD;
    const char *p = c->p;
    char ch = p[c->i];
    if (ch == '"')
        return plain_string(c, start, len) ? V_STR : BAD;
    *start = c->i;
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        Py_ssize_t j = c->i;
        int neg = ch == '-';
        j += neg;
        Py_ssize_t d0 = j;
        int64_t x = 0;
        while (j < c->n && p[j] >= '0' && p[j] <= '9') {
            if (j - d0 >= 18)
                return BAD; /* orjson reads a long integer as a float */
            x = x * 10 + (p[j] - '0');
            j++;
        }
        if (j == d0 || (j - d0 > 1 && p[d0] == '0'))
            return BAD; /* no digits, or a leading zero: not JSON */
        if (j < c->n && (p[j] == '.' || p[j] == 'e' || p[j] == 'E'))
            return BAD;
        *len = j - c->i;
        *num = x;
        c->i = j;
        return neg ? V_NEGINT : V_INT;
    }
    Py_ssize_t left = c->n - c->i;
    if (left >= 4 && memcmp(p + c->i, "null", 4) == 0) {
        c->i += 4;
        *len = 4;
        return V_NULL;
    }
    if (left >= 4 && memcmp(p + c->i, "true", 4) == 0) {
        c->i += 4;
        *len = 4;
        return V_LIT;
    }
    if (left >= 5 && memcmp(p + c->i, "false", 5) == 0) {
        c->i += 5;
        *len = 5;
        return V_LIT;
    }
    return BAD;
}

enum { K_e, K_E, K_s, K_c, K_o, K_h, K_l, K_v, K_q, K_st, NKEYS };

static int key_of(const char *p, Py_ssize_t n)
{
    if (n == 1) {
        switch (p[0]) {
        case 'e': return K_e;
        case 'E': return K_E;
        case 's': return K_s;
        case 'c': return K_c;
        case 'o': return K_o;
        case 'h': return K_h;
        case 'l': return K_l;
        case 'v': return K_v;
        case 'q': return K_q;
        default: return -1;
        }
    }
    if (n == 2 && p[0] == 's' && p[1] == 't')
        return K_st;
    return -1;
}

#define HAS_E 1
#define HAS_STREAM 2
#define HAS_DATA 4

static void set_values(Rec *r, int64_t time, const double x[6])
{
    r->time = time;
    r->c = x[0];
    r->o = x[1];
    r->h = x[2];
    r->l = x[3];
    r->v = x[4];
    r->q = x[5];
}

/* A flat object at '{' into r (r->ok: a ticker read_element accepts); BAD when not plain. */
static int element(Cur *c, Rec *r, int *flags)
{
    Py_ssize_t vs[NKEYS], vl[NKEYS];
    int vt[NKEYS];
    int64_t vn[NKEYS];
    unsigned seen = 0;
    int dup = 0;
    const char *p = c->p;
    for (int k = 0; k < NKEYS; k++) {
        vs[k] = vl[k] = 0;
        vt[k] = BAD;
        vn[k] = 0;
    }
    r->start = c->i;
    r->ok = 0;
    c->i++;
    skip_ws(c);
    if (at(c, '}'))
        c->i++;
    else {
        for (;;) {
            Py_ssize_t ks, kl, s0, l0;
            int64_t num = 0;
            if (!plain_string(c, &ks, &kl))
                return BAD;
            skip_ws(c);
            if (!at(c, ':'))
                return BAD;
            c->i++;
            skip_ws(c);
            int t = scalar(c, &s0, &l0, &num);
            if (t == BAD)
                return BAD;
            int k = key_of(p + ks, kl);
            if (k >= 0) {
                if (seen >> k & 1)
                    dup = 1; /* orjson keeps the last; Python reads such an element */
                seen |= 1u << k;
                vs[k] = s0;
                vl[k] = l0;
                vt[k] = t;
                vn[k] = num;
            }
            else if (kl == 6 && memcmp(p + ks, "stream", 6) == 0)
                *flags |= HAS_STREAM;
            else if (kl == 4 && memcmp(p + ks, "data", 4) == 0)
                *flags |= HAS_DATA;
            skip_ws(c);
            if (at(c, ',')) {
                c->i++;
                skip_ws(c);
                continue;
            }
            if (at(c, '}')) {
                c->i++;
                break;
            }
            return BAD;
        }
    }
    r->end = c->i;
    if (seen >> K_e & 1)
        *flags |= HAS_E;
    /* what read_element accepts, in the forms read here */
    const unsigned need = (1u << K_st) - 1;
    if (dup || (seen & need) != need)
        return 0;
    if (vt[K_e] != V_STR || vl[K_e] != 14 || memcmp(p + vs[K_e], "24hrMiniTicker", 14) != 0)
        return 0;
    if ((seen >> K_st & 1) &&
        !(vt[K_st] == V_NULL || (vt[K_st] == V_INT && vn[K_st] == c->market_st)))
        return 0;
    if (vt[K_E] != V_INT || vt[K_s] != V_STR || vl[K_s] == 0)
        return 0;
    for (Py_ssize_t j = 0; j < vl[K_s]; j++) {
        char ch = p[vs[K_s] + j];
        if (ch >= 'a' && ch <= 'z')
            return 0; /* upper() would change it */
    }
    double x[6];
    for (int k = K_c; k <= K_q; k++)
        if (vt[k] != V_STR || !read_text(p + vs[k], vl[k], &x[k - K_c]))
            return 0;
    set_values(r, vn[K_E], x);
    r->sym = vs[K_s];
    r->nsym = vl[K_s];
    r->text = vs[K_c];
    r->ntext = vl[K_c];
    r->hash = sym_hash(p + r->sym, r->nsym);
    r->ok = 1;
    return 0;
}

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL
/* The bytes a symbol is read with at full speed: printable ASCII but '"', '\\' and lowercase. */
static const unsigned char SYMBOL_BYTE[256] = {
#define R4(x) x, x, x, x
#define R16(x) R4(x), R4(x), R4(x), R4(x)
    R16(0), R16(0),                                  /* 0x00-0x1f */
    0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2f: not ' ' or '"' */
    R16(1), R16(1),                                  /* 0x30-0x4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5f: not '\\' */
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60-0x6f: not 'a'-'o' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, /* 0x70-0x7f: not 'p'-'z' or DEL */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), /* 0x80-0xff */
#undef R16
#undef R4
};

static const char HEAD[] = "{\"e\":\"24hrMiniTicker\",\"E\":";

/* Binance's own layout of a mini ticker, read at full speed:
 *   {"e":"24hrMiniTicker","E":<int>,"s":"<SYMBOL>","c":"<dec>","o":"<dec>","h":"<dec>",
 *    "l":"<dec>","v":"<dec>","q":"<dec>"}
 * with no whitespace, <dec> a plain decimal. 1 with r filled (ok) and c past the '}'; 0, with
 * nothing consumed, when the element differs in any way: element() then reads it. What this
 * accepts, element() reads to the same values. */
static int binance_element(Cur *c, Rec *r)
{
    const char *p = c->p + c->i;
    const Py_ssize_t n = c->n - c->i;
    const Py_ssize_t head = (Py_ssize_t)sizeof(HEAD) - 1;
    if (n < head || memcmp(p, HEAD, (size_t)head) != 0)
        return 0;
    Py_ssize_t j = head, d0 = head;
    int64_t t = 0;
#ifdef SWAR
    if (n - j >= 16 && !nondigits(load8(p + j))) {
        /* an event time of 8 to 15 digits (Binance's have 13) in two words */
        uint64_t b = load8(p + j + 8), nb = nondigits(b);
        if (nb) {
            int k = __builtin_ctzll(nb) >> 3;
            t = (int64_t)(digits8(load8(p + j)) * IPOW10[k] + digits_value(b, k));
            j += 8 + k;
        }
    }
#endif
    if (j == d0)
        while (j < n && (unsigned)(p[j] - '0') < 10) {
            if (j - d0 >= 18)
                return 0; /* too long for this path (and t * 10 would overflow) */
            t = t * 10 + (p[j] - '0');
            j++;
        }
    Py_ssize_t nd = j - d0;
    if (nd == 0 || nd > 18 || (nd > 1 && p[d0] == '0'))
        return 0;
    if (n - j < 6 || memcmp(p + j, ",\"s\":\"", 6) != 0)
        return 0;
    j += 6;
    Py_ssize_t sym = j;
    uint64_t h = FNV_OFFSET;
    for (; j < n && SYMBOL_BYTE[(unsigned char)p[j]]; j++)
        h = (h ^ (unsigned char)p[j]) * FNV_PRIME;
    if (j == n || j == sym || p[j] != '"')
        return 0;
    Py_ssize_t nsym = j - sym;
    j++;
#ifdef SWAR
#define KEY(ch) (0x223A2200222CULL | (uint64_t)(ch) << 16) /* ,"ch":" */
    static const uint64_t KEYS[6] = {KEY('c'), KEY('o'), KEY('h'), KEY('l'), KEY('v'), KEY('q')};
#undef KEY
#else
    static const char names[6] = {'c', 'o', 'h', 'l', 'v', 'q'};
#endif
    double x[6];
    Py_ssize_t text = 0, ntext = 0;
    for (int k = 0; k < 6; k++) {
        Py_ssize_t len;
#ifdef SWAR
        /* ,"k":" as one word (the value and the closing brace follow: 8 bytes are there) */
        if (n - j < 8 || (load8(p + j) & 0xFFFFFFFFFFFFULL) != KEYS[k])
            return 0;
#else
        if (n - j < 6 || p[j] != ',' || p[j + 1] != '"' || p[j + 2] != names[k] ||
            p[j + 3] != '"' || p[j + 4] != ':' || p[j + 5] != '"')
            return 0;
#endif
        j += 6;
        if (!plain_decimal(p + j, n - j, &len, &x[k]))
            return 0;
        if (k == 0) {
            text = j;
            ntext = len;
        }
        j += len + 1;
    }
    if (j >= n || p[j] != '}')
        return 0;
    j++;
    Py_ssize_t base = c->i;
    r->start = base;
    r->end = base + j;
    r->ok = 1;
    set_values(r, t, x);
    r->sym = base + sym;
    r->nsym = nsym;
    r->text = base + text;
    r->ntext = ntext;
    r->hash = h;
    c->i = base + j;
    return 1;
}

static Rec *next_rec(Recs *rs)
{
    if (grow((void **)&rs->at, &rs->cap, rs->n + 1, sizeof(Rec)) < 0)
        return NULL;
    return &rs->at[rs->n];
}

static int raw_array(Recs *rs, Cur *c)
{
    c->i++;
    skip_ws(c);
    if (at(c, ']')) {
        c->i++;
        return 0;
    }
    for (;;) {
        Rec *r = next_rec(rs);
        if (r == NULL)
            return NOMEM;
        if (at(c, '{')) {
            int flags = 0;
            if (!binance_element(c, r) && element(c, r, &flags) == BAD)
                return BAD;
        }
        else {
            Py_ssize_t s0, l0;
            int64_t num;
            r->start = c->i;
            r->ok = 0;
            if (scalar(c, &s0, &l0, &num) == BAD)
                return BAD;
            r->end = c->i;
        }
        rs->n++;
        skip_ws(c);
        if (at(c, ',')) {
            c->i++;
            skip_ws(c);
            continue;
        }
        if (at(c, ']')) {
            c->i++;
            return 0;
        }
        return BAD;
    }
}

/* A single ticker object: one that alertbot.ticker.unwrap passes on as the only element. */
static int raw_object(Recs *rs, Cur *c, int top)
{
    Rec *r = next_rec(rs);
    if (r == NULL)
        return NOMEM;
    int flags = 0;
    if (binance_element(c, r))
        flags = HAS_E;
    else if (element(c, r, &flags) == BAD)
        return BAD;
    if (!(flags & HAS_E))
        return BAD; /* maybe a reply: decoded and classified in Python */
    if (top && (flags & HAS_STREAM) && (flags & HAS_DATA))
        return BAD; /* a wrapper after all */
    rs->n++;
    return 0;
}

static int raw_frame(Recs *rs, Cur *c)
{
    skip_ws(c);
    if (at(c, '['))
        return raw_array(rs, c);
    if (!at(c, '{'))
        return BAD;
    /* the combined-stream wrapper, keys in Binance's order */
    Cur w = *c;
    Py_ssize_t ks, kl, s0, l0;
    w.i++;
    skip_ws(&w);
    if (!plain_string(&w, &ks, &kl) || kl != 6 || memcmp(w.p + ks, "stream", 6) != 0)
        return raw_object(rs, c, 1);
    skip_ws(&w);
    if (!at(&w, ':'))
        return BAD;
    w.i++;
    skip_ws(&w);
    if (!plain_string(&w, &s0, &l0))
        return BAD;
    skip_ws(&w);
    if (!at(&w, ','))
        return BAD;
    w.i++;
    skip_ws(&w);
    if (!plain_string(&w, &ks, &kl) || kl != 4 || memcmp(w.p + ks, "data", 4) != 0)
        return BAD;
    skip_ws(&w);
    if (!at(&w, ':'))
        return BAD;
    w.i++;
    skip_ws(&w);
    int r;
    if (at(&w, '['))
        r = raw_array(rs, &w);
    else if (at(&w, '{'))
        r = raw_object(rs, &w, 0);
    else
        return BAD;
    if (r < 0)
        return r;
    skip_ws(&w);
    if (!at(&w, '}'))
        return BAD;
    w.i++;
    *c = w;
    return 0;
}

/* ------------------------------------------------------------------ methods */

/* fast-call argument helpers: -1 with an exception set on error */
static int nargs_ok(Py_ssize_t nargs, Py_ssize_t want, const char *name)
{
    if (nargs == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
    return -1;
}

static int arg_index(PyObject *x, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(x);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int arg_double(PyObject *x, double *out)
{
    *out = PyFloat_AsDouble(x);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *Core_scan(Core *self, PyObject *args)
{
    PyObject *elements;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &elements, &start))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(elements);
    for (Py_ssize_t i = start < 0 ? 0 : start; i < n; i++) {
        PyObject *el = PyList_GET_ITEM(elements, i);
        if (!PyDict_CheckExact(el))
            return PyLong_FromSsize_t(2 * i);
        if (PyDict_GetItemWithError(el, s_st) != NULL || PyErr_Occurred())
            goto fallback;
        PyObject *e = PyDict_GetItemWithError(el, s_e);
        if (e == NULL || !PyUnicode_CheckExact(e) || PyUnicode_Compare(e, s_event) != 0)
            goto fallback;
        PyObject *sym = PyDict_GetItemWithError(el, s_s);
        PyObject *et = PyDict_GetItemWithError(el, s_E);
        PyObject *c = PyDict_GetItemWithError(el, s_c);
        PyObject *o = PyDict_GetItemWithError(el, s_o);
        PyObject *h = PyDict_GetItemWithError(el, s_h);
        PyObject *l = PyDict_GetItemWithError(el, s_l);
        PyObject *v = PyDict_GetItemWithError(el, s_v);
        PyObject *q = PyDict_GetItemWithError(el, s_q);
        if (!sym || !et || !c || !o || !h || !l || !v || !q || !PyLong_CheckExact(et) ||
            !plain_symbol(sym))
            goto fallback;
        int overflow = 0;
        long long t = PyLong_AsLongLongAndOverflow(et, &overflow);
        if (overflow || t < 0)
            goto fallback;
        double fc, fo, fh, fl, fv, fq;
        if (!read_number(c, &fc) || !read_number(o, &fo) || !read_number(h, &fh) ||
            !read_number(l, &fl) || !read_number(v, &fv) || !read_number(q, &fq))
            goto fallback;
        PyObject *slot_obj = PyDict_GetItemWithError(self->symbols, sym);
        if (slot_obj == NULL)
            goto fallback;
        Py_ssize_t slot = PyLong_AsSsize_t(slot_obj);
        self->good++;
        int r = feed(self, &self->slots[slot], (int64_t)t, fc, fo, fh, fl, fv, fq, c, NULL, 0);
        if (r < 0)
            return NULL;
        if (r == BUSY) {
            self->slot = slot;
            return PyLong_FromSsize_t(2 * i + 1);
        }
        continue;
    fallback:
        if (PyErr_Occurred())
            return NULL;
        return PyLong_FromSsize_t(2 * i);
    }
    return PyLong_FromSsize_t(2 * n);
}

/* parse_raw(frame) -> number of elements, or -1: decode the frame with orjson instead. */
static PyObject *Core_parse_raw(Core *self, PyObject *raw)
{
    Py_CLEAR(self->raw);
    self->recs.n = 0;
    if (!PyBytes_CheckExact(raw))
        return PyLong_FromLong(-1);
    Cur c = {PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), 0, self->market_st};
    int r = raw_frame(&self->recs, &c);
    if (r == NOMEM) {
        self->recs.n = 0;
        return NULL;
    }
    skip_ws(&c);
    if (r == BAD || c.i != c.n) {
        self->recs.n = 0;
        return PyLong_FromLong(-1);
    }
    Py_INCREF(raw);
    self->raw = raw;
    return PyLong_FromSsize_t(self->recs.n);
}

/* scan() over the elements of the last parse_raw() frame. */
static PyObject *Core_scan_raw(Core *self, PyObject *arg)
{
    Py_ssize_t start = PyLong_AsSsize_t(arg);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t n = self->recs.n;
    if (n && self->raw == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no frame");
        return NULL;
    }
    const char *p = n ? PyBytes_AS_STRING(self->raw) : NULL;
    for (Py_ssize_t i = start < 0 ? 0 : start; i < n; i++) {
        Rec *r = &self->recs.at[i];
        if (!r->ok)
            return PyLong_FromSsize_t(2 * i);
        Py_ssize_t slot = sym_find(self, p + r->sym, r->nsym, r->hash);
        if (slot < 0)
            return PyLong_FromSsize_t(2 * i);
        self->good++;
        Slot *s = &self->slots[slot];
        if (r->time <= s->time)
            continue; /* DUPLICATE: feed() would change nothing */
        PyObject *text = NULL;
        if (r->ntext > TEXT_MAX) {
            text = PyUnicode_New(r->ntext, 127);
            if (text == NULL)
                return NULL;
            memcpy(PyUnicode_DATA(text), p + r->text, (size_t)r->ntext);
        }
        int res = feed(self, s, r->time, r->c, r->o, r->h, r->l, r->v, r->q, text, p + r->text,
                       r->ntext);
        Py_XDECREF(text);
        if (res < 0)
            return NULL;
        if (res == BUSY) {
            self->slot = slot;
            return PyLong_FromSsize_t(2 * i + 1);
        }
    }
    return PyLong_FromSsize_t(2 * n);
}

/* The byte span of element i of the last parse_raw() frame: (start, end). */
static PyObject *Core_span(Core *self, PyObject *arg)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || i >= self->recs.n) {
        PyErr_SetString(PyExc_IndexError, "no such element");
        return NULL;
    }
    return Py_BuildValue("(nn)", self->recs.at[i].start, self->recs.at[i].end);
}

static PyObject *Core_feed(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "feed() takes 9 arguments");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[0]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    int err = 0;
    int64_t time = as_time(args[1], &err);
    if (err)
        return NULL;
    double x[6];
    for (int k = 0; k < 6; k++) {
        x[k] = PyFloat_AsDouble(args[2 + k]);
        if (x[k] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    if (!PyUnicode_Check(args[8])) {
        PyErr_SetString(PyExc_TypeError, "text must be a str");
        return NULL;
    }
    int r = feed(self, s, time, x[0], x[1], x[2], x[3], x[4], x[5], args[8], NULL, 0);
    if (r < 0)
        return NULL;
    return PyLong_FromLong(r);
}

static PyObject *Core_add(Core *self, PyObject *symbol)
{
    if (grow((void **)&self->slots, &self->cap, self->n + 1, sizeof(Slot)) < 0)
        return NULL;
    PyObject *index = PyLong_FromSsize_t(self->n);
    if (index == NULL || PyDict_SetItem(self->symbols, symbol, index) < 0 ||
        sym_add(self, symbol, self->n) < 0) {
        Py_XDECREF(index);
        return NULL;
    }
    Slot *s = &self->slots[self->n];
    memset(s, 0, sizeof(Slot));
    s->time = s->ptime = -1;
    /* memset: no text objects, empty texts in the buffers */
    for (int k = 0; k < KINDS; k++) {
        s->glo[k] = s->ghi[k] = NAN;
        s->kval[k] = NAN;
        s->kpos[k] = -1;
    }
    s->due = -1;
    self->n++;
    return index;
}

static PyObject *Core_set_horizon(Core *self, PyObject *arg)
{
    int err = 0;
    int64_t h = as_time(arg, &err);
    if (err)
        return NULL;
    self->horizon = h;
    Py_RETURN_NONE;
}

/* The windows' hits as a Python int: bits 2w and 2w+1 for window w, any number of windows. */
static PyObject *window_hits(Slot *s)
{
    if (!s->anyhits)
        return PyLong_FromLong(0);
    if (s->nw <= 32) {
        unsigned long long bits = 0;
        for (Py_ssize_t w = 0; w < s->nw; w++)
            bits |= (unsigned long long)s->wins[w].hits << (2 * w);
        return PyLong_FromUnsignedLongLong(bits);
    }
    size_t n = ((size_t)s->nw * 2 + 7) / 8;
    unsigned char *bytes = PyMem_Calloc(n, 1);
    if (bytes == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t w = 0; w < s->nw; w++)
        bytes[(2 * w) / 8] |= (unsigned char)(s->wins[w].hits << ((2 * w) % 8));
    PyObject *r = _PyLong_FromByteArray(bytes, n, 1, 0);
    PyMem_Free(bytes);
    return r;
}

/* Make a price text kept as bytes a str (once: it is kept). -1 on error. */
static int slot_text(PyObject **obj, const char *buf, Py_ssize_t len)
{
    if (*obj != NULL)
        return 0;
    *obj = PyUnicode_New(len, 127);
    if (*obj == NULL)
        return -1;
    memcpy(PyUnicode_DATA(*obj), buf, (size_t)len);
    return 0;
}

static PyObject *Core_values(Core *self, PyObject *arg)
{
    Slot *s = slot_arg(self, arg);
    if (s == NULL)
        return NULL;
    if (slot_text(&s->text, s->tbuf, s->tlen) < 0 || slot_text(&s->ptext, s->ptbuf, s->ptlen) < 0)
        return NULL;
    PyObject *wins = window_hits(s);
    if (wins == NULL)
        return NULL;
    /* built item by item: Py_BuildValue's format parsing was a visible share of a busy tick */
    PyObject *t = PyTuple_New(19);
    if (t == NULL) {
        Py_DECREF(wins);
        return NULL;
    }
    const double x[12] = {s->c, s->o, s->h, s->l, s->v, s->q, s->pc, s->po, s->ph, s->pl, s->pv, s->pq};
    PyTuple_SET_ITEM(t, 0, PyLong_FromLongLong(s->time));
    PyTuple_SET_ITEM(t, 8, PyLong_FromLongLong(s->ptime));
    for (int k = 0; k < 6; k++) {
        PyTuple_SET_ITEM(t, 1 + k, PyFloat_FromDouble(x[k]));
        PyTuple_SET_ITEM(t, 9 + k, PyFloat_FromDouble(x[6 + k]));
    }
    Py_INCREF(s->text);
    PyTuple_SET_ITEM(t, 7, s->text);
    Py_INCREF(s->ptext);
    PyTuple_SET_ITEM(t, 15, s->ptext);
    PyTuple_SET_ITEM(t, 16, PyLong_FromUnsignedLong(s->kinds));
    PyTuple_SET_ITEM(t, 17, wins);
    PyTuple_SET_ITEM(t, 18, PyLong_FromLong(self->flags));
    for (int k = 0; k < 19; k++)
        if (PyTuple_GET_ITEM(t, k) == NULL) {
            Py_DECREF(t); /* tupledealloc skips the NULL items */
            return NULL;
        }
    return t;
}


/* history(slot) -> [(time, price), ...]: the running extremes' entries in time order. */
static PyObject *Core_history(Core *self, PyObject *arg)
{
    Slot *s = slot_arg(self, arg);
    if (s == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t a = 0, b = 0;
    while (a < s->min_n || b < s->max_n) {
        int64_t t;
        double p;
        if (b >= s->max_n || (a < s->min_n && s->min_t[a] < s->max_t[b])) {
            t = s->min_t[a];
            p = s->min_p[a++];
        }
        else if (a >= s->min_n || s->max_t[b] < s->min_t[a]) {
            t = s->max_t[b];
            p = s->max_p[b++];
        }
        else { /* the same tick in both: the price of the later list, as core.py's dict */
            t = s->max_t[b];
            p = s->max_p[b++];
            a++;
        }
        PyObject *item = Py_BuildValue("(Ld)", (long long)t, p);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

/* remember(slot, time, price): a past price into the running extremes, evaluating nothing. */
static PyObject *Core_remember(Core *self, PyObject *args)
{
    Py_ssize_t i;
    PyObject *time;
    double price;
    if (!PyArg_ParseTuple(args, "nO!d", &i, &PyLong_Type, &time, &price))
        return NULL;
    int err = 0;
    int64_t t = as_time(time, &err);
    if (err)
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    if (t > s->time && (s->min_n == 0 || t > s->min_t[s->min_n - 1]))
        if (push(self, s, t, price) < 0)
            return NULL;
    Py_RETURN_NONE;
}

static PyObject *Core_add_window(Core *self, PyObject *args)
{
    Py_ssize_t i;
    long long ms;
    if (!PyArg_ParseTuple(args, "nL", &i, &ms))
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    Win *wins = PyMem_Realloc(s->wins, (size_t)(s->nw + 1) * sizeof(Win));
    if (wins == NULL)
        return PyErr_NoMemory();
    s->wins = wins;
    Win *win = &wins[s->nw];
    memset(win, 0, sizeof(Win));
    win->ms = ms;
    win->low = win->high = win->lo = win->hi = NAN;
    win->expires = -1;
    win->rglo = win->rghi = win->dglo = win->dghi = NAN;
    return PyLong_FromSsize_t(s->nw++);
}


static PyObject *Core_invalidate(Core *self, PyObject *args)
{
    Py_ssize_t i, w;
    if (!PyArg_ParseTuple(args, "nn", &i, &w))
        return NULL;
    Win *win = get_win(self, i, w);
    if (win == NULL)
        return NULL;
    win->expires = -1;
    Py_RETURN_NONE;
}



static PyObject *Core_set_pending(Core *self, PyObject *args)
{
    Py_ssize_t i;
    int flag;
    if (!PyArg_ParseTuple(args, "np", &i, &flag))
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    s->pending = flag;
    Py_RETURN_NONE;
}

static PyObject *Core_set_breaks(Core *self, PyObject *args)
{
    Py_ssize_t i;
    int flag;
    if (!PyArg_ParseTuple(args, "np", &i, &flag))
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    s->breaks = flag;
    Py_RETURN_NONE;
}


static PyObject *Core_set_gap(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i, kind;
    double glo, ghi;
    if (nargs_ok(nargs, 4, "set_gap") < 0 || arg_index(args[0], &i) < 0 ||
        arg_index(args[1], &kind) < 0 || arg_double(args[2], &glo) < 0 ||
        arg_double(args[3], &ghi) < 0)
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    if (kind < 0 || kind >= KINDS) {
        PyErr_SetString(PyExc_ValueError, "no such metric kind");
        return NULL;
    }
    s->watch |= 1u << kind;
    s->glo[kind] = glo;
    s->ghi[kind] = ghi;
    Py_RETURN_NONE;
}

static PyObject *Core_set_keys(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i, kind;
    if (nargs_ok(nargs, 3, "set_keys") < 0 || arg_index(args[0], &i) < 0 ||
        arg_index(args[1], &kind) < 0)
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    if (kind < 0 || kind >= KINDS) {
        PyErr_SetString(PyExc_ValueError, "no such metric kind");
        return NULL;
    }
    PyObject *list = args[2];
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "set_keys: keys must be a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    double *keys = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(double));
    if (keys == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t j = 0; j < n; j++) {
        double x = PyFloat_AsDouble(PyList_GET_ITEM(list, j));
        if (x == -1.0 && PyErr_Occurred()) {
            PyMem_Free(keys);
            return NULL;
        }
        keys[j] = x;
    }
    PyMem_Free(s->keys[kind]);
    s->keys[kind] = keys;
    s->nkeys[kind] = n;
    s->kpos[kind] = -1;
    Py_RETURN_NONE;
}

static Py_ssize_t bisect_d(const double *keys, Py_ssize_t n, double x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (keys[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static PyObject *Core_walk(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i, kind;
    double new;
    if (nargs_ok(nargs, 3, "walk") < 0 || arg_index(args[0], &i) < 0 ||
        arg_index(args[1], &kind) < 0 || arg_double(args[2], &new) < 0)
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    if (kind < 0 || kind >= KINDS) {
        PyErr_SetString(PyExc_ValueError, "no such metric kind");
        return NULL;
    }
    const double *keys = s->keys[kind];
    Py_ssize_t n = s->nkeys[kind];
    double old = s->kval[kind];
    s->watch |= 1u << kind;
    s->kval[kind] = new;
    if (new != new) {
        s->kpos[kind] = -1;
        s->glo[kind] = s->ghi[kind] = NAN;
        return PyLong_FromLong(-1);
    }
    long long r;
    Py_ssize_t at;
    if (old != old) {
        r = -1;
        at = bisect_d(keys, n, new);
    }
    else {
        Py_ssize_t p = s->kpos[kind];
        if (p < 0)
            p = bisect_d(keys, n, old);
        Py_ssize_t b = p;
        if (old <= new) {
            while (b < n && keys[b] <= new)
                b++;
            at = b;
            while (at > p && keys[at - 1] >= new)
                at--;
            r = ((long long)p << 32) | (long long)b;
        }
        else {
            at = p;
            while (at > 0 && keys[at - 1] >= new)
                at--;
            while (b < n && keys[b] <= old)
                b++;
            r = ((long long)at << 32) | (long long)b;
        }
    }
    s->kpos[kind] = at;
    if (at < n && keys[at] == new)
        s->glo[kind] = s->ghi[kind] = new;
    else {
        s->glo[kind] = at ? keys[at - 1] : -INFINITY;
        s->ghi[kind] = at < n ? keys[at] : INFINITY;
    }
    return PyLong_FromLongLong(r);
}

static PyObject *Core_set_window_gap(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i, w;
    double glo, ghi;
    if (nargs_ok(nargs, 5, "set_window_gap") < 0 || arg_index(args[0], &i) < 0 ||
        arg_index(args[1], &w) < 0 || arg_double(args[3], &glo) < 0 ||
        arg_double(args[4], &ghi) < 0)
        return NULL;
    int drop = PyObject_IsTrue(args[2]);
    if (drop < 0)
        return NULL;
    Win *win = get_win(self, i, w);
    if (win == NULL)
        return NULL;
    if (drop) {
        win->drop = 1;
        win->dglo = glo;
        win->dghi = ghi;
    }
    else {
        win->rise = 1;
        win->rglo = glo;
        win->rghi = ghi;
    }
    Py_RETURN_NONE;
}

static PyObject *Core_band(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i, w;
    if (nargs_ok(nargs, 2, "band") < 0 || arg_index(args[0], &i) < 0 ||
        arg_index(args[1], &w) < 0)
        return NULL;
    Win *win = get_win(self, i, w);
    if (win == NULL)
        return NULL;
    band(win, self->slots[i].c);
    Py_RETURN_NONE;
}

static PyObject *Core_extremes(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i, w;
    if (nargs_ok(nargs, 2, "extremes") < 0 || arg_index(args[0], &i) < 0 ||
        arg_index(args[1], &w) < 0)
        return NULL;
    Win *win = get_win(self, i, w);
    if (win == NULL)
        return NULL;
    return Py_BuildValue("(dd)", win->low, win->high);
}

static PyObject *Core_settle(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i;
    if (nargs_ok(nargs, 3, "settle") < 0 || arg_index(args[0], &i) < 0)
        return NULL;
    Slot *s = get_slot(self, i);
    if (s == NULL)
        return NULL;
    int pending = PyObject_IsTrue(args[1]);
    if (pending < 0)
        return NULL;
    int err = 0;
    int64_t due = as_time(args[2], &err);
    if (err)
        return NULL;
    s->pending = pending;
    s->due = due;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ conflation
 *
 * conflate(frames, market_st, judge, max_odd): alertbot.feed.handoff's conflation of frames'
 * bytes, without a Python object per element. Each frame is read as parse_raw() reads it; when
 * one is not in the plain form (BAD), the result is None: the caller decodes and conflates them
 * all in Python (judge() may have been asked about earlier frames' elements; it only reads).
 * Otherwise, per symbol (in order of first appearance) and in event-time order, a tick not newer
 * than the symbol's last taken is dropped, and of the others the newest and the first of the
 * lowest and of the highest value of each of the seven metrics are kept (price, volume, quote
 * volume, high, low, change and range; a NaN percentage is no extreme), exactly as
 * handoff.conflate_decoded keeps them. An element the C reader does not take as a ticker keyed
 * by its bytes (not ok, or a symbol beyond ASCII, which Python may upper-case) is handed to
 * judge(bytes of the element), which reads it as Python does: None for an element to pass on
 * for the engine to count, else (symbol, time, c, o, h, l, v, q).
 *
 * The result is (frame, dropped): the bytes of one array frame, "[" + the odd elements (up to
 * max_odd) and the kept ticks' elements, joined by "," + "]", which parse_raw() reads as it read
 * them, and how many elements were left out.
 */

/* per metric, low and high: price, volume, quote volume, high, low, change, range */
#define CMETRICS 7

/* An element: its number among all frames' (their order) and where its bytes lie. */
typedef struct {
    Py_ssize_t k, frame, start, end;
} CTick;

typedef struct {
    const char *key; /* the symbol as Python keys it, in UTF-8 */
    Py_ssize_t nkey;
    uint64_t hash;
    int64_t last; /* event time of the newest tick taken */
    CTick newest, lo[CMETRICS], hi[CMETRICS];
    double lov[CMETRICS], hiv[CMETRICS];
} CSym;

typedef struct {
    CSym *syms;
    Py_ssize_t n, cap;
    Py_ssize_t *table;    /* open addressing: index into syms, -1 empty */
    Py_ssize_t table_cap; /* a power of two, or 0 */
} CSyms;

static CSym *csym_get(CSyms *t, const char *key, Py_ssize_t nkey, uint64_t h, int *created)
{
    *created = 0;
    if (t->table_cap) {
        size_t mask = (size_t)t->table_cap - 1;
        for (size_t i = (size_t)h & mask; t->table[i] >= 0; i = (i + 1) & mask) {
            CSym *s = &t->syms[t->table[i]];
            if (s->hash == h && s->nkey == nkey && memcmp(s->key, key, (size_t)nkey) == 0)
                return s;
        }
    }
    if ((t->n + 1) * 2 > t->table_cap) {
        Py_ssize_t cap = t->table_cap ? t->table_cap * 2 : 2048;
        Py_ssize_t *table = PyMem_Malloc((size_t)cap * sizeof(Py_ssize_t));
        if (table == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t i = 0; i < cap; i++)
            table[i] = -1;
        size_t mask = (size_t)cap - 1;
        for (Py_ssize_t k = 0; k < t->n; k++) {
            size_t i = (size_t)t->syms[k].hash & mask;
            while (table[i] >= 0)
                i = (i + 1) & mask;
            table[i] = k;
        }
        PyMem_Free(t->table);
        t->table = table;
        t->table_cap = cap;
    }
    if (grow((void **)&t->syms, &t->cap, t->n + 1, sizeof(CSym)) < 0)
        return NULL;
    size_t mask = (size_t)t->table_cap - 1;
    size_t i = (size_t)h & mask;
    while (t->table[i] >= 0)
        i = (i + 1) & mask;
    t->table[i] = t->n;
    CSym *s = &t->syms[t->n++];
    s->key = key;
    s->nkey = nkey;
    s->hash = h;
    *created = 1;
    return s;
}

/* A tick of a symbol into its extremes, as handoff.conflate_decoded weighs it. */
static void csym_tick(CSym *s, int created, const CTick *e, int64_t time, double c, double o,
                      double h, double lo, double v, double q)
{
    if (!created && time <= s->last)
        return; /* not newer than a tick taken: the engine would drop it */
    double change = pct(c - o, o), range = pct(h - lo, lo);
    double low[CMETRICS] = {c, v, q, h, lo, change == change ? change : INFINITY,
                            range == range ? range : INFINITY};
    double high[CMETRICS] = {c, v, q, h, lo, change == change ? change : -INFINITY,
                             range == range ? range : -INFINITY};
    s->last = time;
    s->newest = *e;
    for (int m = 0; m < CMETRICS; m++) {
        /* the first of the lowest and of the highest (min() and max() keep the first) */
        if (created || low[m] < s->lov[m]) {
            s->lov[m] = low[m];
            s->lo[m] = *e;
        }
        if (created || high[m] > s->hiv[m]) {
            s->hiv[m] = high[m];
            s->hi[m] = *e;
        }
    }
}

/* A symbol's kept ticks into out, each once, oldest first: how many. */
static int csym_kept(const CSym *s, CTick out[2 * CMETRICS + 1])
{
    int n = 0;
    const CTick *all[2 * CMETRICS + 1];
    all[0] = &s->newest;
    for (int m = 0; m < CMETRICS; m++) {
        all[1 + 2 * m] = &s->lo[m];
        all[2 + 2 * m] = &s->hi[m];
    }
    for (int a = 0; a < 2 * CMETRICS + 1; a++) {
        const CTick *x = all[a];
        int b = n;
        while (b > 0 && out[b - 1].k > x->k)
            b--;
        if (b > 0 && out[b - 1].k == x->k)
            continue;
        memmove(&out[b + 1], &out[b], (size_t)(n - b) * sizeof(CTick));
        out[b] = *x;
        n++;
    }
    return n;
}

static PyObject *fast_conflate(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs_ok(nargs, 4, "conflate") < 0)
        return NULL;
    PyObject *frames = args[0], *judge = args[2];
    long market_st = PyLong_AsLong(args[1]);
    if (market_st == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t max_odd;
    if (arg_index(args[3], &max_odd) < 0)
        return NULL;
    if (!PyList_CheckExact(frames)) {
        PyErr_SetString(PyExc_TypeError, "conflate() takes a list of frames");
        return NULL;
    }
    Py_ssize_t nf = PyList_GET_SIZE(frames);
    for (Py_ssize_t f = 0; f < nf; f++)
        if (!PyBytes_CheckExact(PyList_GET_ITEM(frames, f)))
            Py_RETURN_NONE;
    Recs rs = {NULL, 0, 0}; /* the elements of one frame at a time */
    CSyms syms = {NULL, 0, 0, NULL, 0};
    CTick *odd = NULL;
    Py_ssize_t nodd = 0, odd_cap = 0, total = 0;
    PyObject *result = NULL;
    PyObject *keep = PyList_New(0); /* judge()'s answers: their symbols' UTF-8 are keys */
    if (keep == NULL)
        goto done;
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *raw = PyList_GET_ITEM(frames, f);
        const char *p = PyBytes_AS_STRING(raw);
        Cur cur = {p, PyBytes_GET_SIZE(raw), 0, (int)market_st};
        rs.n = 0;
        int r = raw_frame(&rs, &cur);
        if (r == NOMEM)
            goto done;
        skip_ws(&cur);
        if (r == BAD || cur.i != cur.n) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
        for (Py_ssize_t i = 0; i < rs.n; i++, total++) {
            Rec *rec = &rs.at[i];
            CTick e = {total, f, rec->start, rec->end};
            int plain = rec->ok, created;
            for (Py_ssize_t j = 0; plain && j < rec->nsym; j++)
                if ((unsigned char)p[rec->sym + j] >= 0x80)
                    plain = 0; /* upper() may change it: Python keys it */
            CSym *s;
            if (plain) {
                s = csym_get(&syms, p + rec->sym, rec->nsym, rec->hash, &created);
                if (s == NULL)
                    goto done;
                csym_tick(s, created, &e, rec->time, rec->c, rec->o, rec->h, rec->l, rec->v,
                          rec->q);
                continue;
            }
            PyObject *span = PyBytes_FromStringAndSize(p + rec->start, rec->end - rec->start);
            if (span == NULL)
                goto done;
            PyObject *t = PyObject_CallOneArg(judge, span);
            Py_DECREF(span);
            if (t == NULL)
                goto done;
            if (t == Py_None) {
                Py_DECREF(t);
                if (nodd < max_odd) {
                    if (grow((void **)&odd, &odd_cap, nodd + 1, sizeof(CTick)) < 0)
                        goto done;
                    odd[nodd++] = e;
                }
                continue;
            }
            const char *key;
            Py_ssize_t nkey;
            long long time;
            double c, o, h, l, v, q;
            int ok = PyArg_ParseTuple(t, "s#Ldddddd;judge() returns a ticker's values", &key,
                                      &nkey, &time, &c, &o, &h, &l, &v, &q);
            if (!ok || PyList_Append(keep, t) < 0) {
                Py_DECREF(t);
                goto done;
            }
            Py_DECREF(t); /* kept alive by keep, and key's bytes with it */
            s = csym_get(&syms, key, nkey, sym_hash(key, nkey), &created);
            if (s == NULL)
                goto done;
            csym_tick(s, created, &e, (int64_t)time, c, o, h, l, v, q);
        }
    }
    /* the merged frame: its size, then its bytes */
    Py_ssize_t kept = nodd, size = 1;
    CTick ks[2 * CMETRICS + 1];
    for (Py_ssize_t i = 0; i < nodd; i++)
        size += odd[i].end - odd[i].start + 1;
    for (Py_ssize_t i = 0; i < syms.n; i++) {
        int n = csym_kept(&syms.syms[i], ks);
        for (int a = 0; a < n; a++)
            size += ks[a].end - ks[a].start + 1;
        kept += n;
    }
    if (kept == 0)
        size++; /* "[]" */
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        goto done;
    char *w = PyBytes_AS_STRING(out);
    *w = '[';
    for (Py_ssize_t i = 0; i < nodd; i++) {
        const CTick *x = &odd[i];
        memcpy(w + 1, PyBytes_AS_STRING(PyList_GET_ITEM(frames, x->frame)) + x->start,
               (size_t)(x->end - x->start));
        w += x->end - x->start + 1;
        *w = ',';
    }
    for (Py_ssize_t i = 0; i < syms.n; i++) {
        int n = csym_kept(&syms.syms[i], ks);
        for (int a = 0; a < n; a++) {
            const CTick *x = &ks[a];
            memcpy(w + 1, PyBytes_AS_STRING(PyList_GET_ITEM(frames, x->frame)) + x->start,
                   (size_t)(x->end - x->start));
            w += x->end - x->start + 1;
            *w = ',';
        }
    }
    w[kept ? 0 : 1] = ']'; /* in place of the last comma */
    result = Py_BuildValue("(Nn)", out, total - kept);
done:
    PyMem_Free(rs.at);
    PyMem_Free(syms.syms);
    PyMem_Free(syms.table);
    PyMem_Free(odd);
    Py_XDECREF(keep);
    return result;
}

/* ------------------------------------------------------------------ type */

static int Core_init(Core *self, PyObject *args, PyObject *kwds)
{
    PyObject *horizon;
    static char *kwlist[] = {"horizon", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!", kwlist, &PyLong_Type, &horizon))
        return -1;
    int err = 0;
    self->horizon = as_time(horizon, &err);
    if (err)
        return -1;
    if (self->symbols == NULL) {
        self->symbols = PyDict_New();
        if (self->symbols == NULL)
            return -1;
    }
    self->slot = -1;
    self->market_st = 1;
    return 0;
}

static void Core_dealloc(Core *self)
{
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Slot *s = &self->slots[i];
        Py_XDECREF(s->text);
        Py_XDECREF(s->ptext);
        PyMem_Free(s->min_t);
        PyMem_Free(s->min_p);
        PyMem_Free(s->max_t);
        PyMem_Free(s->max_p);
        PyMem_Free(s->wins);
        for (int k = 0; k < KINDS; k++)
            PyMem_Free(s->keys[k]);
    }
    PyMem_Free(self->slots);
    Py_XDECREF(self->symbols);
    for (Py_ssize_t i = 0; i < self->table_cap; i++)
        if (self->table[i].slot >= 0)
            PyMem_Free(self->table[i].bytes);
    PyMem_Free(self->table);
    PyMem_Free(self->recs.at);
    Py_XDECREF(self->raw);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Core_methods[] = {
    {"scan", (PyCFunction)Core_scan, METH_VARARGS, NULL},
    {"parse_raw", (PyCFunction)Core_parse_raw, METH_O, NULL},
    {"scan_raw", (PyCFunction)Core_scan_raw, METH_O, NULL},
    {"span", (PyCFunction)Core_span, METH_O, NULL},
    {"feed", (PyCFunction)(void (*)(void))Core_feed, METH_FASTCALL, NULL},
    {"add", (PyCFunction)Core_add, METH_O, NULL},
    {"set_horizon", (PyCFunction)Core_set_horizon, METH_O, NULL},
    {"values", (PyCFunction)Core_values, METH_O, NULL},
    {"set_gap", (PyCFunction)(void (*)(void))Core_set_gap, METH_FASTCALL, NULL},
    {"set_keys", (PyCFunction)(void (*)(void))Core_set_keys, METH_FASTCALL, NULL},
    {"walk", (PyCFunction)(void (*)(void))Core_walk, METH_FASTCALL, NULL},
    {"add_window", (PyCFunction)Core_add_window, METH_VARARGS, NULL},
    {"history", (PyCFunction)Core_history, METH_O, NULL},
    {"remember", (PyCFunction)Core_remember, METH_VARARGS, NULL},
    {"set_window_gap", (PyCFunction)(void (*)(void))Core_set_window_gap, METH_FASTCALL, NULL},
    {"invalidate", (PyCFunction)Core_invalidate, METH_VARARGS, NULL},
    {"band", (PyCFunction)(void (*)(void))Core_band, METH_FASTCALL, NULL},
    {"extremes", (PyCFunction)(void (*)(void))Core_extremes, METH_FASTCALL, NULL},
    {"set_pending", (PyCFunction)Core_set_pending, METH_VARARGS, NULL},
    {"set_breaks", (PyCFunction)Core_set_breaks, METH_VARARGS, NULL},
    {"settle", (PyCFunction)(void (*)(void))Core_settle, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Core_members[] = {
    {"good", T_PYSSIZET, offsetof(Core, good), 0, NULL},
    {"slot", T_PYSSIZET, offsetof(Core, slot), READONLY, NULL},
    {"flags", T_LONG, offsetof(Core, flags), READONLY, NULL},
    {"market_st", T_INT, offsetof(Core, market_st), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "alertbot.rules._fastcore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "alertbot.rules.core.Core in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_members = Core_members,
};

static PyMethodDef module_methods[] = {
    {"conflate", (PyCFunction)(void (*)(void))fast_conflate, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastcore", "alertbot.rules.core in C", -1, module_methods,
};

PyMODINIT_FUNC PyInit__fastcore(void)
{
#define INTERN(var, text)                                   \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;
    INTERN(s_e, "e");
    INTERN(s_E, "E");
    INTERN(s_s, "s");
    INTERN(s_c, "c");
    INTERN(s_o, "o");
    INTERN(s_h, "h");
    INTERN(s_l, "l");
    INTERN(s_v, "v");
    INTERN(s_q, "q");
    INTERN(s_st, "st");
    INTERN(s_event, "24hrMiniTicker");
    if (PyType_Ready(&CoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddIntConstant(m, "DUPLICATE", DUPLICATE) < 0 ||
        PyModule_AddIntConstant(m, "QUIET", QUIET) < 0 ||
        PyModule_AddIntConstant(m, "BUSY", BUSY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
