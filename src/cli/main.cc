#include <iostream>

#include "core/error.h"

int main(int, char**) {
  std::cout << "fastdit\n";
  return 0;
}
