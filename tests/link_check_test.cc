// LibTorch, Debian's protobuf and gRPC in one process. Old libtorch builds exported their own protobuf and
// crashed such programs; the 2.11 wheel keeps protobuf internal (only onnx_torch:: messages and three
// byteswap helpers are exported) but libtorch.so exports copies of some libstdc++ symbols, which the link
// order must keep from interposing. This binary exercises all three sides.
#include <google/protobuf/struct.pb.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <torch/types.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace {

TEST(LinkCheckTest, ProtobufRoundTripWithTorchLoaded) {
  torch::Tensor t = torch::arange(6, torch::kFloat32).reshape({2, 3});
  google::protobuf::Struct s;
  (*s.mutable_fields())["sum"].set_number_value(t.sum().item<double>());
  (*s.mutable_fields())["name"].set_string_value("kvc");
  std::string bytes;
  ASSERT_TRUE(s.SerializeToString(&bytes));
  google::protobuf::Struct back;
  ASSERT_TRUE(back.ParseFromString(bytes));
  EXPECT_EQ(back.fields().at("sum").number_value(), 15.0);
  EXPECT_EQ(back.fields().at("name").string_value(), "kvc");
}

TEST(LinkCheckTest, GrpcServerStartsWithTorchLoaded) {
  grpc::CallbackGenericService generic;  // a server needs at least one service; callback API as kvc uses
  grpc::ServerBuilder builder;
  builder.RegisterCallbackGenericService(&generic);
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  EXPECT_GT(port, 0);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  EXPECT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5)));
  server->Shutdown();
  EXPECT_EQ((torch::ones({4}) * 2).sum().item<float>(), 8.0f);
}

TEST(LinkCheckTest, StdFilesystemIsTheSystemOne) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(::testing::TempDir()) / "kvc_link_check" / "nested";
  fs::create_directories(dir);
  std::ofstream(dir / "f") << "x";
  EXPECT_GE(fs::remove_all(dir.parent_path()), 2u);
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
