#ifndef GATEHOUSE_CCURL_H
#define GATEHOUSE_CCURL_H
#include <curl/curl.h>
#endif
