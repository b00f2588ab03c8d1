# Included by _core.pyx. Date shifting and age clamping in C, on the value bytes: no Python objects, no GIL.
# They mirror veil.core.plan.shift_date_value and clamp_age_value (the tests compare the two).

cdef inline bint all_digits(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return False
    return True


cdef inline int64_t num(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef int64_t v = 0
    cdef Py_ssize_t i
    for i in range(n):
        v = v * 10 + (p[i] - 48)
    return v


cdef inline int64_t floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    if m <= 2:
        y -= 1
    cdef int64_t era = floordiv(y, 400)
    cdef int64_t yoe = y - era * 400
    cdef int64_t mp = m - 3 if m > 2 else m + 9
    cdef int64_t doy = (153 * mp + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline void civil_from_days(int64_t z, int64_t* y, int64_t* m, int64_t* d) noexcept nogil:
    z += 719468
    cdef int64_t era = floordiv(z, 146097)
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    d[0] = doy - (153 * mp + 2) // 5 + 1
    m[0] = mp + 3 if mp < 10 else mp - 9
    y[0] = yoe + era * 400 + (1 if m[0] <= 2 else 0)


cdef inline int days_in_month(int64_t y, int64_t m) noexcept nogil:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef int shift_ymd(const uint8_t* p, Py_ssize_t n, int days, uint8_t* dst) noexcept nogil:
    """YYYY[MM[DD]] moved by days into dst (same length); -1 when it is not a valid date."""
    cdef int64_t y, m = 1, d = 1
    cdef uint8_t tmp[8]
    if (n != 4 and n != 6 and n != 8) or not all_digits(p, n):
        return -1
    y = num(p, 4)
    if n >= 6:
        m = num(p + 4, 2)
    if n == 8:
        d = num(p + 6, 2)
    if m < 1 or m > 12 or d < 1 or d > days_in_month(y, m):
        return -1
    civil_from_days(days_from_civil(y, m, d) + days, &y, &m, &d)
    if y < 0 or y > 9999:
        return -1
    tmp[0] = 48 + (y // 1000) % 10
    tmp[1] = 48 + (y // 100) % 10
    tmp[2] = 48 + (y // 10) % 10
    tmp[3] = 48 + y % 10
    tmp[4] = 48 + m // 10
    tmp[5] = 48 + m % 10
    tmp[6] = 48 + d // 10
    tmp[7] = 48 + d % 10
    memcpy(dst, tmp, n)
    return <int>n


cdef int shift_dt(const uint8_t* p, Py_ssize_t n, int days, uint8_t* dst) noexcept nogil:
    """One DT value: the date part moves, time, fraction and UTC offset stay; -1 when unparseable."""
    cdef Py_ssize_t body = n, whole, i, dot = -1
    if n >= 5 and (p[n - 5] == 43 or p[n - 5] == 45) and all_digits(p + n - 4, 4):
        body = n - 5
    for i in range(body):
        if p[i] == 46:
            dot = i
            break
    whole = dot if dot >= 0 else body
    if dot >= 0:
        if body - dot - 1 < 1 or body - dot - 1 > 6 or not all_digits(p + dot + 1, body - dot - 1):
            return -1
        if whole != 14:
            return -1
    if (whole != 4 and whole != 6 and whole != 8 and whole != 10 and whole != 12 and whole != 14) \
            or not all_digits(p, whole):
        return -1
    if shift_ymd(p, whole if whole < 8 else 8, days, dst) < 0:
        return -1
    if whole > 8:
        memcpy(dst + 8, p + 8, n - 8)
    elif n > whole:
        memcpy(dst + whole, p + whole, n - whole)
    return <int>n


cdef inline int shift_one(const uint8_t* p, Py_ssize_t n, bint is_dt, int days, uint8_t* dst) noexcept nogil:
    if is_dt:
        return shift_dt(p, n, days, dst)
    return shift_ymd(p, n, days, dst)


cdef Py_ssize_t range_split(const uint8_t* p, Py_ssize_t n, bint is_dt) noexcept nogil:
    """Index of the hyphen that separates a range, or -1 (mirrors plan._split_range; -2: not a range)."""
    cdef Py_ssize_t i, found = -1, count = 0
    if not is_dt:
        for i in range(n):
            if p[i] == 45:
                count += 1
                found = i
        return found if count == 1 else -1
    for i in range(n):
        if p[i] != 45:
            continue
        if n - i - 1 >= 4 and all_digits(p + i + 1, 4) and (n - i - 1 == 4 or p[i + 5] == 45) and i >= 4:
            continue
        return i
    return -1


cdef Py_ssize_t shift_value(const uint8_t* p, Py_ssize_t n, bint is_dt, int days, uint8_t* dst) noexcept nogil:
    """A whole DA/DT value (multi-valued, ranges): writes dst, returns its length or -1 (unparseable)."""
    cdef Py_ssize_t start = 0, stop, a, b, out = 0, cut
    cdef int r
    while True:
        stop = start
        while stop < n and p[stop] != 92:
            stop += 1
        a = start
        b = stop
        while a < b and (p[a] == 32 or p[a] == 0):
            a += 1
        while b > a and (p[b - 1] == 32 or p[b - 1] == 0):
            b -= 1
        if b > a:
            cut = range_split(p + a, b - a, is_dt)
            if cut < 0:
                r = shift_one(p + a, b - a, is_dt, days, dst + out)
                if r < 0:
                    return -1
                out += r
            else:
                if cut == 0 and b - a == 1:
                    return -1
                if cut > 0:
                    r = shift_one(p + a, cut, is_dt, days, dst + out)
                    if r < 0:
                        return -1
                    out += r
                dst[out] = 45
                out += 1
                if b - a - cut - 1 > 0:
                    r = shift_one(p + a + cut + 1, b - a - cut - 1, is_dt, days, dst + out)
                    if r < 0:
                        return -1
                    out += r
        if stop >= n:
            break
        dst[out] = 92
        out += 1
        start = stop + 1
    return out


cdef Py_ssize_t clamp_age(const uint8_t* p, Py_ssize_t n, int cap, uint8_t* dst) noexcept nogil:
    """An AS value at or over cap years becomes capY (e.g. 090Y); -1 when unparseable."""
    cdef Py_ssize_t a = 0, b = n
    cdef int64_t v
    cdef bint over
    while a < b and (p[a] == 32 or p[a] == 0):
        a += 1
    while b > a and (p[b - 1] == 32 or p[b - 1] == 0):
        b -= 1
    if b == a:
        return 0
    if b - a != 4 or not all_digits(p + a, 3):
        return -1
    v = num(p + a, 3)
    if p[a + 3] == 68:  # D
        over = 4 * v >= 1461 * cap
    elif p[a + 3] == 87:  # W
        over = 28 * v >= 1461 * cap
    elif p[a + 3] == 77:  # M
        over = v >= 12 * cap
    elif p[a + 3] == 89:  # Y
        over = v >= cap
    else:
        return -1
    if over:
        dst[0] = 48 + (cap // 100) % 10
        dst[1] = 48 + (cap // 10) % 10
        dst[2] = 48 + cap % 10
        dst[3] = 89
    else:
        memcpy(dst, p + a, 4)
    return 4
