/* SPDX-License-Identifier: MIT */
/*
 * reportfmt.c - the benchmark tools' shared report formatting (reportfmt.h). Writes
 * only to the FILE it is given, or to the file json_write_object opens and closes.
 */
#include <errno.h>
#include <string.h>

#include "reportfmt.h"

const char *human_count(double v, char *buf, size_t len)
{
	if (v >= 1e6)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, len, "%.1fk", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char) *s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

const char *json_bool(bool v)
{
	return v ? "true" : "false";
}

int json_write_object(const char *prog, const char *path, const char *(*errstr)(int),
		      json_members_fn *members, const void *a, const void *b)
{
	bool to_stdout = strcmp(path, "-") == 0;
	FILE *f = to_stdout ? stdout : fopen(path, "w");
	int rc = 0;

	if (!f) {
		rc = -errno;
		fprintf(stderr, "%s: %s: %s\n", prog, path, errstr(rc));
		return rc;
	}
	fprintf(f, "{\n");
	members(f, a, b);
	fprintf(f, "}\n");
	if (fflush(f) != 0 || ferror(f))
		rc = -EIO;
	if (!to_stdout && fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc)
		fprintf(stderr, "%s: writing %s: %s\n", prog, path, errstr(rc));
	return rc;
}
