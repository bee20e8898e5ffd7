/* SPDX-License-Identifier: MIT */
/*
 * bytes.c - keys and values as the command line gives them (an argument's bytes, hex,
 * or stdin) and as the tool prints them (raw, hex, or escaped text), plus number
 * parsing. Pure helpers: no store calls.
 *
 * Escaped text (dump, and keys in messages): bytes 0x20..0x7e other than '\' print as
 * themselves, '\' prints as "\\", every other byte as "\xHH" (two lower-case hex
 * digits). A tab or newline in a key is therefore always escaped, so dump's
 * "KEY<TAB>VALUE<NEWLINE>" lines split without ambiguity.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aurakv_cli.h"

static int hex_digit(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* An even number of hex digits (no prefix, no separators) into new bytes. 0 or
 * -EINVAL, -ENOMEM. */
int bytes_from_hex(const char *hex, struct bytes *out)
{
	size_t n = strlen(hex);
	unsigned char *p;

	if (n % 2)
		return -EINVAL;
	p = malloc(n / 2 + 1);
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_digit((unsigned char) hex[2 * i]);
		int lo = hex_digit((unsigned char) hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			free(p);
			return -EINVAL;
		}
		p[i] = (unsigned char) (hi << 4 | lo);
	}
	*out = (struct bytes){ p, n / 2, true };
	return 0;
}

/* An argument: its own bytes (borrowed), or hex-decoded. */
int bytes_from_arg(const char *arg, bool hex, struct bytes *out)
{
	if (hex)
		return bytes_from_hex(arg, out);
	*out = (struct bytes){ (unsigned char *) arg, strlen(arg), false };
	return 0;
}

/* All of `in`, at most `max` bytes. 0, -EFBIG (more than max), -ENOMEM or -errno. */
int bytes_from_stream(FILE *in, size_t max, struct bytes *out)
{
	size_t cap = 4096, len = 0;
	unsigned char *p = malloc(cap);

	if (!p)
		return -ENOMEM;
	for (;;) {
		size_t got;

		if (len == cap) {
			unsigned char *q = cap > max ? NULL : realloc(p, cap * 2);

			if (!q) {
				free(p);
				return cap > max ? -EFBIG : -ENOMEM;
			}
			p = q;
			cap *= 2;
		}
		got = fread(p + len, 1, cap - len, in);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(in) || len > max) {
		free(p);
		return ferror(in) ? -EIO : -EFBIG;
	}
	*out = (struct bytes){ p, len, true };
	return 0;
}

void bytes_free(struct bytes *b)
{
	if (b->owned)
		free(b->p);
	*b = (struct bytes){ NULL, 0, false };
}

/* The escaped text of the file comment. 0 or -EIO (the stream failed). */
int print_escaped(FILE *out, const void *p, size_t len)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\')
			fputs("\\\\", out);
		else if (s[i] >= 0x20 && s[i] <= 0x7e)
			putc(s[i], out);
		else
			fprintf(out, "\\x%02x", s[i]);
	}
	return ferror(out) ? -EIO : 0;
}

/* Lower-case hex, two digits a byte, no separators. 0 or -EIO. */
int print_hex(FILE *out, const void *p, size_t len)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < len; i++)
		fprintf(out, "%02x", s[i]);
	return ferror(out) ? -EIO : 0;
}

/* A decimal number, nothing else. 0 or -EINVAL. */
int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char) *s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "4096", "4k", "2m", "1g" (binary multiples). 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!isdigit((unsigned char) *s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (tolower((unsigned char) *end)) {
	case '\0':
		break;
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t) v << shift;
	return 0;
}
