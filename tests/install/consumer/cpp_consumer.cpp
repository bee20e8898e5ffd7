// Links the static library through find_package and uses the C++ wrapper.
#include <auraio.hpp>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

int main()
{
	auraio::Engine engine(auraio::Options().ring_count(1).queue_depth(64));
	int fd = open("/proc/self/exe", O_RDONLY);
	char buf[4] = {};
	ssize_t got = -1;

	engine.read(fd, buf, sizeof(buf), 0, [&](auraio::Request &, ssize_t r) { got = r; });
	while (got < 0)
		engine.wait();
	close(fd);
	std::printf("cpp consumer read %zd bytes: %c%c%c\n", got, buf[1], buf[2], buf[3]);
	return (got == 4 && buf[1] == 'E' && buf[2] == 'L' && buf[3] == 'F') ? 0 : 1;
}
