#ifndef GATEHOUSE_CCURLSHIMS_H
#define GATEHOUSE_CCURLSHIMS_H
#include <curl/curl.h>

/// curl_easy_setopt is variadic: one typed wrapper per argument kind.
CURLcode CCurlShims_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode CCurlShims_setopt_pointer(CURL *handle, CURLoption option, const void *value);
CURLcode CCurlShims_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value);
typedef size_t (*CCurlShims_write_callback)(char *data, size_t size, size_t count, void *context);
CURLcode CCurlShims_setopt_write_function(CURL *handle, CURLoption option, CCurlShims_write_callback callback);
CURLcode CCurlShims_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode CCurlShims_getinfo_string(CURL *handle, CURLINFO info, const char **value);

#endif
